"""The periodic schedule that beat runs. Tasks themselves live in the apps."""

from __future__ import annotations

from typing import Any

from django.conf import settings


def beat_schedule() -> dict[str, dict[str, Any]]:
    return {
        "worker-heartbeat": {
            "task": "apps.core.tasks.worker_heartbeat",
            "schedule": float(settings.PARETO_WORKER_HEARTBEAT_INTERVAL),
        },
        "endpoints-reconcile": {
            "task": "endpoints.reconcile_all",
            "schedule": float(settings.PARETO_RECONCILE_INTERVAL_SECONDS),
        },
    }
