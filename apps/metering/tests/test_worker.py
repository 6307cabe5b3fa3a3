"""The metering tasks on a real Celery worker with beat: beat's scrape schedule books a live /metrics page, and the
accrual and rollup tasks run through Redis like in production."""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection

from apps.endpoints.models import Endpoint
from apps.metering import tasks
from apps.metering.models import UsageHour, UsageMinute

from .factories import metered_endpoint
from .helpers import Replica, exposition

ROOT = Path(__file__).resolve().parents[3]
pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True), pytest.mark.timeout(300)]


def _database_url() -> str:
    db = connection.settings_dict
    auth = db["USER"] + (f":{db['PASSWORD']}" if db.get("PASSWORD") else "")
    return f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


@pytest.fixture
def worker(tmp_path: Path) -> Iterator[Path]:
    log = tmp_path / "worker.log"
    env = {
        **os.environ,
        "DATABASE_URL": _database_url(),
        "REDIS_URL": settings.CELERY_BROKER_URL,
        "PARETO_METERING_SCRAPE_INTERVAL": "2",
        "PYTHONUNBUFFERED": "1",
    }
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "controlplane",
                "worker",
                "--beat",
                "--loglevel",
                "INFO",
                "--concurrency",
                "1",
                "--without-mingle",
                "--without-gossip",
                "--purge",
                "--schedule",
                str(tmp_path / "beat-schedule"),
                "--hostname",
                f"metering-{os.getpid()}@%h",
            ],
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield log
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


def wait_for(check: Callable[[], bool], what: str, log: Path, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}; worker log:\n{log.read_text(errors='replace')[-3000:]}")


def prompt_tokens(endpoint: Endpoint) -> int:
    return sum(UsageMinute.objects.filter(endpoint=endpoint).values_list("prompt_tokens", flat=True))


def test_beat_scrapes_and_the_worker_accrues_and_rolls_up(team_a, metrics_server, worker):
    endpoint = metered_endpoint(team=team_a, metrics_urls="x", gpus_per_replica=2)
    Endpoint.objects.filter(pk=endpoint.pk).update(created_at=endpoint.created_at - dt.timedelta(hours=1))
    endpoint.cluster.metrics_urls = metrics_server.url("/metrics")
    endpoint.cluster.save()
    replica = Replica(endpoint.served_model_id)
    replica.serve(prompt=321, generation=12)
    metrics_server.pages["/metrics"] = exposition([replica])
    wait_for(lambda: prompt_tokens(endpoint) == 321, "beat's scrape to book the first request", worker)
    replica.serve(prompt=79, generation=8)
    metrics_server.pages["/metrics"] = exposition([replica])
    wait_for(lambda: prompt_tokens(endpoint) == 400, "the next scrape to book the delta", worker)
    assert metrics_server.hits["/metrics"] >= 2

    tasks.accrue.delay()
    wait_for(
        lambda: UsageMinute.objects.filter(endpoint=endpoint, gpu_seconds=120).exists(), "GPU time accrued", worker
    )
    tasks.rollup_and_alert.delay()
    wait_for(lambda: UsageHour.objects.filter(endpoint=endpoint).exists(), "the hourly rollup", worker)
    assert sum(UsageHour.objects.filter(endpoint=endpoint).values_list("prompt_tokens", flat=True)) == 400
