"""/healthz (process alive) and /readyz (database, Redis, worker heartbeat) as orchestrators call them."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest

from apps.core.health import HEARTBEAT_KEY, redis_client


@pytest.fixture
def fresh_heartbeat() -> Iterator[None]:
    redis_client().set(HEARTBEAT_KEY, str(time.time()))
    yield
    redis_client().delete(HEARTBEAT_KEY)


@pytest.fixture
def unreachable_redis(settings) -> Iterator[None]:
    with socket.socket() as sock:  # a port nothing listens on once the socket is closed
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    settings.CELERY_BROKER_URL = f"redis://127.0.0.1:{port}/0"
    redis_client.cache_clear()
    yield
    redis_client.cache_clear()


def test_healthz_answers_anonymous_callers_without_touching_the_database(client):
    # No `db` fixture: any database access here would raise and fail the test.
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    assert "no-cache" in response["Cache-Control"]


def test_readyz_is_ok_with_database_redis_and_a_fresh_heartbeat(client, db, fresh_heartbeat):
    response = client.get("/readyz")
    assert response.status_code == 200
    assert {name: check["ok"] for name, check in response.json()["checks"].items()} == {
        "database": True,
        "redis": True,
        "worker": True,
    }


def test_readyz_names_redis_when_it_is_unreachable(client, db, unreachable_redis):
    response = client.get("/readyz")
    assert response.status_code == 503
    checks = response.json()["checks"]
    assert checks["database"]["ok"] is True
    assert checks["redis"]["ok"] is False
    assert "ConnectionError" in checks["redis"]["detail"]
    assert checks["worker"]["ok"] is False


def test_probes_stay_on_plain_http_when_https_is_enforced(client, db, settings, fresh_heartbeat):
    settings.SECURE_SSL_REDIRECT = True
    assert client.get("/healthz").status_code == 200
    assert client.get("/readyz").status_code == 200
    redirected = client.get("/login/")
    assert redirected.status_code == 301
    assert redirected["Location"].startswith("https://")


def test_probes_only_answer_get(client, db):
    assert client.post("/healthz").status_code == 405
