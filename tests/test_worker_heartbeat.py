"""/readyz needs a recent worker heartbeat: beat sends the task, a real worker runs it, through real Redis."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

from apps.core.health import HEARTBEAT_KEY, redis_client

ROOT = Path(__file__).resolve().parent.parent
HEARTBEAT_INTERVAL = "1"  # seconds; the setting exists so that this test is quick


def isolated_redis_url(url: str) -> str:
    """The same Redis server, another database: the worker started here must not pick up other tests' tasks."""
    parts = urlsplit(url)
    current = int(parts.path.strip("/") or 0)
    return urlunsplit(parts._replace(path=f"/{15 if current != 15 else 14}"))


@pytest.fixture
def no_heartbeat() -> Iterator[None]:
    redis_client().delete(HEARTBEAT_KEY)
    yield
    redis_client().delete(HEARTBEAT_KEY)


@pytest.fixture
def isolated_redis(settings) -> Iterator[str]:
    url = isolated_redis_url(settings.CELERY_BROKER_URL)
    settings.CELERY_BROKER_URL = url
    redis_client.cache_clear()
    redis_client().delete(HEARTBEAT_KEY)
    yield url
    redis_client().delete(HEARTBEAT_KEY)
    redis_client.cache_clear()


def start(argv: list[str], log: Path, redis_url: str) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "REDIS_URL": redis_url,
        "PARETO_WORKER_HEARTBEAT_INTERVAL": HEARTBEAT_INTERVAL,
        "PYTHONUNBUFFERED": "1",
    }
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "controlplane", *argv],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@pytest.fixture
def worker_and_beat(
    tmp_path: Path, isolated_redis: str
) -> Iterator[tuple[subprocess.Popen[bytes], subprocess.Popen[bytes]]]:
    worker = start(
        ["worker", "--pool", "solo", "--without-mingle", "--without-gossip", "--loglevel", "INFO",
         "--hostname", f"test-heartbeat-{uuid.uuid4().hex[:8]}@%h"],
        tmp_path / "worker.log",
        isolated_redis,
    )  # fmt: skip
    beat = start(
        ["beat", "--loglevel", "INFO", "--schedule", str(tmp_path / "beat-schedule")],
        tmp_path / "beat.log",
        isolated_redis,
    )
    try:
        yield worker, beat
    finally:
        stop(beat)
        stop(worker)


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_readyz_turns_ready_after_a_real_worker_heartbeat(client, db, isolated_redis, tmp_path, request):
    before = client.get("/readyz")
    assert before.status_code == 503
    assert before.json()["checks"]["worker"] == {
        "ok": False,
        "detail": "no worker heartbeat yet (is the worker and beat running?)",
    }
    assert before.json()["checks"]["database"]["ok"] and before.json()["checks"]["redis"]["ok"]

    worker, beat = request.getfixturevalue("worker_and_beat")
    deadline = time.monotonic() + 90
    response = client.get("/readyz")
    while response.status_code != 200 and time.monotonic() < deadline:
        assert worker.poll() is None, (tmp_path / "worker.log").read_text()
        assert beat.poll() is None, (tmp_path / "beat.log").read_text()
        time.sleep(0.5)
        response = client.get("/readyz")

    assert response.status_code == 200, response.json()
    assert response.json()["status"] == "ok"
    assert all(check["ok"] for check in response.json()["checks"].values())
    assert "worker_heartbeat" in (tmp_path / "worker.log").read_text()


def test_readyz_is_unavailable_with_a_clear_message_when_the_heartbeat_is_stale(client, db, no_heartbeat, settings):
    settings.PARETO_WORKER_HEARTBEAT_MAX_AGE = 60
    redis_client().set(HEARTBEAT_KEY, str(time.time() - 600))

    response = client.get("/readyz")

    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable"
    assert body["checks"]["worker"]["ok"] is False
    assert body["checks"]["worker"]["detail"].startswith("last worker heartbeat 60")
    assert "limit 60s" in body["checks"]["worker"]["detail"]


def test_heartbeat_max_age_is_the_configured_one(client, db, no_heartbeat, settings):
    redis_client().set(HEARTBEAT_KEY, str(time.time() - 30))

    settings.PARETO_WORKER_HEARTBEAT_MAX_AGE = 10
    assert client.get("/readyz").status_code == 503
    settings.PARETO_WORKER_HEARTBEAT_MAX_AGE = 120
    assert client.get("/readyz").status_code == 200


def test_beat_schedules_the_heartbeat_at_the_configured_interval(settings):
    from worker.schedule import beat_schedule

    settings.PARETO_WORKER_HEARTBEAT_INTERVAL = 7.5
    entry = beat_schedule()["worker-heartbeat"]
    assert entry["task"] == "apps.core.tasks.worker_heartbeat"
    assert entry["schedule"] == 7.5
