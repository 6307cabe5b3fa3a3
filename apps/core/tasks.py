from __future__ import annotations

import time

from celery import shared_task

from .health import HEARTBEAT_KEY, redis_client


@shared_task(name="apps.core.tasks.worker_heartbeat", ignore_result=True)
def worker_heartbeat() -> float:
    """Beat sends this periodically; a worker running it proves beat, broker and worker all work."""
    now = time.time()
    redis_client().set(HEARTBEAT_KEY, str(now))
    return now
