"""Readiness checks: database, Redis and a recent worker heartbeat."""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import lru_cache

import redis
from django.conf import settings
from django.db import connection

HEARTBEAT_KEY = "pareto:worker:heartbeat"


@lru_cache(maxsize=1)
def redis_client() -> redis.Redis:
    return redis.Redis.from_url(settings.CELERY_BROKER_URL, socket_timeout=2, socket_connect_timeout=2)


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str


def check_database() -> Check:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        return Check("database", True, "ok")
    except Exception as exc:  # any driver error means not ready
        return Check("database", False, f"{type(exc).__name__}: {exc}")


def check_redis() -> Check:
    try:
        redis_client().ping()
        return Check("redis", True, "ok")
    except Exception as exc:  # any client error means not ready
        return Check("redis", False, f"{type(exc).__name__}: {exc}")


def check_worker() -> Check:
    max_age = settings.PARETO_WORKER_HEARTBEAT_MAX_AGE
    try:
        raw = redis_client().get(HEARTBEAT_KEY)
    except Exception as exc:  # Redis down is reported by check_redis too
        return Check("worker", False, f"cannot read heartbeat: {type(exc).__name__}")
    if raw is None:
        return Check("worker", False, "no worker heartbeat yet (is the worker and beat running?)")
    age = time.time() - float(raw)
    if age > max_age:
        return Check("worker", False, f"last worker heartbeat {age:.0f}s ago (limit {max_age}s)")
    return Check("worker", True, f"heartbeat {age:.0f}s ago")


def readiness() -> list[Check]:
    return [check_database(), check_redis(), check_worker()]
