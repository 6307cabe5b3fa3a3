"""E-mails about requests and endpoints, through Django's e-mail backend (console in development).

Mail goes out after the transaction commits, so a rolled-back change never announces itself.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction

from apps.accounts.models import User

if TYPE_CHECKING:
    from .models import Endpoint, QuotaRequest
    from .selectors import QuotaFit

log = logging.getLogger(__name__)


def _send(subject: str, body: str, recipients: list[str]) -> None:
    recipients = sorted({r for r in recipients if r})
    if not recipients:
        return

    def deliver() -> None:
        try:
            send_mail(f"[Pareto] {subject}", body, settings.DEFAULT_FROM_EMAIL, recipients)
        except Exception:  # mail trouble must never undo or block the change it reports
            log.exception("could not send %r to %s", subject, recipients)

    transaction.on_commit(deliver)


def _admins() -> list[str]:
    return list(User.objects.filter(is_active=True, is_platform_admin=True).values_list("email", flat=True))


def endpoint_waiting(endpoint: Endpoint, fit: QuotaFit) -> None:
    _send(
        f"Endpoint request waiting: {endpoint}",
        f"{endpoint.requested_by} asked for {endpoint} ({endpoint.model.name}, {endpoint.reserved_gpus} x "
        f"{endpoint.gpu_type.sku}).\n{endpoint.state_message}\nQuota: {fit.explain()}.",
        _admins(),
    )


def endpoint_approved(endpoint: Endpoint) -> None:
    _send(
        f"Endpoint approved: {endpoint}",
        f"{endpoint.state_message}\nProvisioning starts now.",
        [endpoint.requested_by.email],
    )


def endpoint_rejected(endpoint: Endpoint) -> None:
    _send(f"Endpoint request rejected: {endpoint}", f"Reason: {endpoint.state_message}", [endpoint.requested_by.email])


def endpoint_ready(endpoint: Endpoint) -> None:
    _send(
        f"Endpoint ready: {endpoint}",
        f"{endpoint} is ready.\nBase URL: {endpoint.base_url}\nModel: {endpoint.served_model_id}",
        [endpoint.requested_by.email],
    )


def endpoint_failed(endpoint: Endpoint) -> None:
    _send(
        f"Endpoint failed: {endpoint}",
        f"{endpoint} failed.\n{endpoint.state_message}",
        [endpoint.requested_by.email, *_admins()],
    )


def quota_request_waiting(request: QuotaRequest, *, current: int) -> None:
    _send(
        f"Quota request waiting: {request.team.slug} {request.gpu_type.sku}",
        f"{request.requested_by} asks to raise {request.team.name}'s {request.gpu_type.sku} quota from {current} "
        f"to {request.requested_limit}.\nJustification: {request.justification}",
        _admins(),
    )


def quota_request_decided(request: QuotaRequest) -> None:
    verdict = "approved" if request.state == "approved" else f"denied: {request.decision_reason}"
    _send(
        f"Quota request {request.state}: {request.team.slug} {request.gpu_type.sku}",
        f"Your request for {request.requested_limit} x {request.gpu_type.sku} was {verdict}.",
        [request.requested_by.email],
    )
