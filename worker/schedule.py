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
        # Kubernetes clusters: readiness by watch (one watch per cluster; a new one starts as the last one ends),
        # and team namespaces restored to the current quotas.
        "endpoints-kube-watch": {
            "task": "endpoints.kube_watch_all",
            "schedule": float(settings.PARETO_KUBE_WATCH_SECONDS),
        },
        "endpoints-kube-namespaces": {
            "task": "endpoints.kube_sync_all",
            "schedule": float(settings.PARETO_RECONCILE_INTERVAL_SECONDS),
        },
        # Metering (apps.metering, docs/metering.md).
        "metering-scrape": {
            "task": "metering.scrape_all",
            "schedule": float(settings.PARETO_METERING_SCRAPE_INTERVAL_SECONDS),
        },
        "metering-accrue": {"task": "metering.accrue", "schedule": 60.0},
        "metering-rollup": {
            "task": "metering.rollup",
            "schedule": float(settings.PARETO_METERING_ROLLUP_INTERVAL_SECONDS),
        },
        "metering-prune": {"task": "metering.prune", "schedule": 6 * 3600.0},
        "metering-monthly-statements": {"task": "metering.monthly_statements", "schedule": 3600.0},
        # Dashboards (docs/dashboards.md): the per-endpoint window summaries behind the frontier, from the rollups.
        "dashboards-refresh-summaries": {
            "task": "dashboards.refresh_summaries",
            "schedule": 300.0,
            "options": {"expires": 300},
        },
    }
