"""Periodic dashboard work: the frontier's per-endpoint summaries (see summaries.py)."""

from __future__ import annotations

from celery import shared_task

from .summaries import refresh_endpoint_summaries


@shared_task(name="dashboards.refresh_summaries", acks_late=True, ignore_result=True)
def refresh_summaries() -> int:
    """Safe to run twice: each window is replaced whole, one refresh at a time (summaries.py)."""
    return refresh_endpoint_summaries()
