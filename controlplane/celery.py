"""The Celery app. Tasks live in the apps; the periodic schedule lives in `worker.schedule`."""

from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "controlplane.settings")

app = Celery("pareto")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@app.on_after_finalize.connect
def _install_schedule(sender: Celery, **_: object) -> None:
    from worker.schedule import beat_schedule

    sender.conf.beat_schedule = beat_schedule()
