"""The endpoint lifecycle on the portal side: request, quota check, approval, updates, deletion, quota requests.

Every reservation change locks the team row first (`_lock_team`), so two concurrent requests can never both see
the same free GPUs. Cluster work is never done here: these services change rows and, once the transaction has
committed, enqueue `tasks.cluster_apply` for the cluster. The runtime side lives in `lifecycle.py`.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from apps.audit.services import Actor, audit_record, snapshot
from apps.catalog.models import CatalogModel
from apps.core.services import save_validated, whole_number
from apps.inventory.models import Cluster, GpuType
from apps.metering.selectors import budget_block_reason
from apps.teams.models import Team
from apps.teams.services import quota_set

from . import notifications
from .engine_args import validate_engine_args
from .models import Endpoint, Operation, QuotaRequest
from .selectors import cluster_capacity, quota_fit

SPEC_FIELDS = ("gpus_per_replica", "min_replicas", "max_replicas", "max_model_len", "engine_args")


def _lock_team(team: Team) -> None:
    """Serialise one team's reservation changes. Taken before any other row lock; those use `of=("self",)`,
    because a plain FOR UPDATE also locks every select_related row (team, GPU type, catalog model), which would
    block other teams' requests for the same model and can deadlock against this lock."""
    Team.objects.select_for_update(no_key=True).filter(pk=team.pk).first()


def _enqueue_apply(endpoint: Endpoint, kind: str) -> None:
    """Record the intended cluster action as a pending Operation, then ask a worker to apply the cluster.

    The pending row is the durable intent: if the message is lost or the worker dies, the reconciler finds it.
    """
    Operation.objects.create(cluster_id=endpoint.cluster_id, endpoint=endpoint, kind=kind)
    from .tasks import cluster_apply

    cluster_id = endpoint.cluster_id
    transaction.on_commit(lambda: cluster_apply.delay(cluster_id))


def _transition(
    endpoint: Endpoint,
    *,
    actor: Actor,
    to: str,
    message: str = "",
    action: str | None = None,
    extra: dict[str, Any] | None = None,
) -> None:
    before = {"state": endpoint.state}
    endpoint.state = to
    endpoint.state_message = message
    for name, value in (extra or {}).items():
        setattr(endpoint, name, value)
    endpoint.save()
    audit_record(
        actor=actor,
        action=action or f"endpoint.{to}",
        target=endpoint,
        team=endpoint.team,
        before=before,
        after={"state": to, "message": message, **(extra or {})},
    )


def _wrong_state(endpoint: Endpoint, wanted: str, verb: str) -> ValidationError:
    return ValidationError(f"Only a {wanted} can be {verb}; this one is {endpoint.get_state_display().lower()}.")


def _count(value: Any, field: str, *, minimum: int = 1) -> int:
    number = whole_number(value, field=field, message=f"Give a whole number, {minimum} or more.")
    if number < minimum:
        raise ValidationError({field: f"Give a whole number, {minimum} or more."})
    return number


def _check_capacity(*, cluster: Cluster, gpu_type: GpuType, needed: int) -> None:
    capacity = cluster_capacity(cluster_id=cluster.pk, gpu_type=gpu_type)
    if needed > capacity:
        raise ValidationError(
            {
                "max_replicas": (
                    f"Cluster {cluster.name} has {capacity} {gpu_type.sku} in all; this endpoint needs {needed} "
                    "(GPUs per replica x max replicas). Choose fewer replicas or another cluster."
                )
            }
        )


def endpoint_request(
    *,
    actor: Actor,
    team: Team,
    name: str,
    model: CatalogModel,
    cluster: Cluster,
    gpu_type: GpuType | None = None,
    gpus_per_replica: int | str = 1,
    min_replicas: int | str = 1,
    max_replicas: int | str = 1,
    max_model_len: int | str | None = None,
    engine_args: dict[str, Any] | None = None,
) -> Endpoint:
    """Ask for an endpoint. Approved at once when it fits the free quota and the team's policy is `auto`;
    otherwise it waits for an admin, with the numbers in its message. Refused when the cluster cannot hold it."""
    if actor.user is None:
        raise ValidationError("An endpoint is requested by a person.")
    gpu_type = gpu_type or model.recommended_gpu_type
    if gpu_type is None:
        raise ValidationError({"gpu_type": "Choose a GPU type."})
    errors: dict[str, str] = {}
    try:
        name = Endpoint._meta.get_field("name").clean(name, None)
    except ValidationError as exc:
        errors["name"] = " ".join(exc.messages)
    if model.status != CatalogModel.Status.APPROVED:
        errors["model"] = f"{model.name} is {model.get_status_display().lower()}; choose an approved model."
    if (over_budget := budget_block_reason(team=team)) is not None:
        errors["team"] = over_budget
    per_replica = _count(gpus_per_replica, "gpus_per_replica")
    low, high = _count(min_replicas, "min_replicas"), _count(max_replicas, "max_replicas")
    if low > high:
        errors["min_replicas"] = "Minimum replicas cannot exceed maximum replicas."
    # Catalog defaults use vLLM's names, and two of them are endpoint fields here, not engine arguments: the
    # model's `max_model_len` is the default context, and the tensor-parallel size is `gpus_per_replica`.
    defaults = dict(model.default_engine_args or {})
    default_context = defaults.pop("max_model_len", None)
    defaults.pop("tensor_parallel_size", None)
    context = model.context_length
    if max_model_len not in (None, ""):
        context = _count(max_model_len, "max_model_len", minimum=16)
    elif isinstance(default_context, int) and 16 <= default_context <= model.context_length:
        context = default_context
    if context > model.context_length:
        errors["max_model_len"] = f"{model.name} supports at most {model.context_length} tokens of context."
    if errors:
        raise ValidationError(errors)
    args = validate_engine_args({**defaults, **(engine_args or {})})
    needed = per_replica * high
    _check_capacity(cluster=cluster, gpu_type=gpu_type, needed=needed)

    with transaction.atomic():
        _lock_team(team)
        # Checked under the team lock, so two requests for one name cannot both pass; a field error, not a
        # form-wide one (the model constraint's own message names no field).
        if Endpoint.objects.filter(team=team, name=name).exclude(state__in=Endpoint.FINAL).exists():
            raise ValidationError({"name": f"{team.name} already has an endpoint named {name}."})
        fit = quota_fit(team=team, gpu_type=gpu_type, needed=needed)
        endpoint = Endpoint(
            team=team,
            name=name,
            model=model,
            cluster=cluster,
            gpu_type=gpu_type,
            gpus_per_replica=per_replica,
            min_replicas=low,
            max_replicas=high,
            max_model_len=context,
            engine_args=args,
            requested_by=actor.user,
            state=Endpoint.State.PENDING_APPROVAL,
        )
        auto = fit.fits and team.approval_policy == Team.ApprovalPolicy.AUTO
        if auto:
            endpoint.state = Endpoint.State.APPROVED
            endpoint.state_message = f"Approved automatically: fits the quota ({fit.explain()})."
        elif fit.fits:
            endpoint.state_message = f"Waiting for an admin (team policy: review); fits the quota ({fit.explain()})."
        else:
            endpoint.state_message = f"Over quota, waiting for an admin: {fit.explain()}."
        save_validated(endpoint)
        audit_record(actor=actor, action="endpoint.request", target=endpoint, team=team, after=snapshot(endpoint))
        if auto:
            _enqueue_apply(endpoint, Operation.Kind.APPLY)
            notifications.endpoint_approved(endpoint)
        else:
            notifications.endpoint_waiting(endpoint, fit)
    return endpoint


def endpoint_approve(*, actor: Actor, endpoint: Endpoint) -> Endpoint:
    """Approve a waiting request. If it does not fit, approving raises the team's quota just enough (audited)."""
    with transaction.atomic():
        _lock_team(endpoint.team)
        endpoint = (
            Endpoint.objects.select_for_update(of=("self",))
            .select_related("team", "gpu_type", "model")
            .get(pk=endpoint.pk)
        )
        if endpoint.state != Endpoint.State.PENDING_APPROVAL:
            raise _wrong_state(endpoint, "waiting request", "approved")
        if endpoint.model.status != CatalogModel.Status.APPROVED:
            # The catalog changed since the request: approving would start a model nobody may deploy any more.
            raise ValidationError(
                f"{endpoint.model.name} is {endpoint.model.get_status_display().lower()} now; reject the request."
            )
        fit = quota_fit(team=endpoint.team, gpu_type=endpoint.gpu_type, needed=endpoint.reserved_gpus)
        message = "Approved."
        if not fit.fits:
            new_limit = fit.reserved + fit.needed
            quota_set(actor=actor, team=endpoint.team, gpu_type=endpoint.gpu_type, limit=new_limit)
            message = f"Approved; {endpoint.gpu_type.sku} quota raised from {fit.limit} to {new_limit} to fit it."
        _transition(
            endpoint,
            actor=actor,
            to=Endpoint.State.APPROVED,
            message=message,
            action="endpoint.approve",
            extra={"approved_by": actor.user},
        )
        _enqueue_apply(endpoint, Operation.Kind.APPLY)
        notifications.endpoint_approved(endpoint)
    return endpoint


def endpoint_reject(*, actor: Actor, endpoint: Endpoint, reason: str) -> Endpoint:
    if not reason or not reason.strip():
        raise ValidationError({"reason": "Say why, so the team knows what to change."})
    with transaction.atomic():
        endpoint = Endpoint.objects.select_for_update(of=("self",)).select_related("team").get(pk=endpoint.pk)
        if endpoint.state != Endpoint.State.PENDING_APPROVAL:
            raise _wrong_state(endpoint, "waiting request", "rejected")
        _transition(endpoint, actor=actor, to=Endpoint.State.REJECTED, message=reason.strip(), action="endpoint.reject")
        notifications.endpoint_rejected(endpoint)
    return endpoint


def endpoint_update(
    *,
    actor: Actor,
    endpoint: Endpoint,
    min_replicas: int | str | None = None,
    max_replicas: int | str | None = None,
    engine_args: dict[str, Any] | None = None,
) -> Endpoint:
    """Scale a ready endpoint or change its engine arguments; growth must fit the free quota."""
    with transaction.atomic():
        _lock_team(endpoint.team)
        endpoint = (
            Endpoint.objects.select_for_update(of=("self",))
            .select_related("team", "gpu_type", "cluster", "model")
            .get(pk=endpoint.pk)
        )
        if endpoint.state != Endpoint.State.READY:
            raise _wrong_state(endpoint, "ready endpoint", "changed")
        before = {name: getattr(endpoint, name) for name in SPEC_FIELDS}
        low = endpoint.min_replicas if min_replicas in (None, "") else _count(min_replicas, "min_replicas")
        high = endpoint.max_replicas if max_replicas in (None, "") else _count(max_replicas, "max_replicas")
        if low > high:
            raise ValidationError({"min_replicas": "Minimum replicas cannot exceed maximum replicas."})
        args = endpoint.engine_args if engine_args is None else validate_engine_args(engine_args)
        needed = endpoint.gpus_per_replica * high
        if needed > endpoint.reserved_gpus:
            _check_capacity(cluster=endpoint.cluster, gpu_type=endpoint.gpu_type, needed=needed)
            fit = quota_fit(team=endpoint.team, gpu_type=endpoint.gpu_type, needed=needed, exclude=endpoint)
            if not fit.fits:
                raise ValidationError({"max_replicas": f"Over quota: {fit.explain()}. Ask for more quota first."})
        endpoint.min_replicas, endpoint.max_replicas, endpoint.engine_args = low, high, args
        after = {name: getattr(endpoint, name) for name in SPEC_FIELDS}
        if after == before:
            return endpoint
        endpoint.generation += 1
        endpoint.full_clean()
        endpoint.state = Endpoint.State.UPDATING
        endpoint.state_message = "Rolling out the change."
        endpoint.save()
        audit_record(
            actor=actor,
            action="endpoint.update",
            target=endpoint,
            team=endpoint.team,
            before={**before, "state": "ready"},
            after={**after, "state": "updating"},
        )
        _enqueue_apply(endpoint, Operation.Kind.UPDATE)
    return endpoint


def endpoint_retry(*, actor: Actor, endpoint: Endpoint) -> Endpoint:
    """Try a failed endpoint again: it re-reserves its GPUs (must fit) and is applied anew."""
    with transaction.atomic():
        _lock_team(endpoint.team)
        endpoint = (
            Endpoint.objects.select_for_update(of=("self",))
            .select_related("team", "gpu_type", "model")
            .get(pk=endpoint.pk)
        )
        if endpoint.state != Endpoint.State.FAILED:
            raise _wrong_state(endpoint, "failed endpoint", "retried")
        if endpoint.model.status == CatalogModel.Status.BLOCKED:
            raise ValidationError(f"{endpoint.model.name} is blocked; it cannot be started again.")
        fit = quota_fit(team=endpoint.team, gpu_type=endpoint.gpu_type, needed=endpoint.reserved_gpus)
        if not fit.fits:
            raise ValidationError(f"Over quota: {fit.explain()}.")
        _transition(
            endpoint,
            actor=actor,
            to=Endpoint.State.APPROVED,
            message="Retrying.",
            action="endpoint.retry",
            extra={"generation": endpoint.generation + 1},
        )
        _enqueue_apply(endpoint, Operation.Kind.APPLY)
    return endpoint


def endpoint_delete(*, actor: Actor, endpoint: Endpoint) -> Endpoint:
    """Delete an endpoint. A waiting request is withdrawn at once; anything that may be on the cluster is removed
    there first, and its GPUs stay reserved until the runtime confirms it is gone.

    A failed endpoint is deleted at once: it holds no GPUs (moving it to `deleting` would reserve them again and
    could push the team over its quota), and whatever is left of it on the cluster is not in the desired set, so
    the next apply removes it (the reconciler reports it as drift if it is still there)."""
    with transaction.atomic():
        endpoint = Endpoint.objects.select_for_update(of=("self",)).select_related("team").get(pk=endpoint.pk)
        if endpoint.state in (Endpoint.State.DELETED, Endpoint.State.REJECTED, Endpoint.State.DELETING):
            return endpoint
        if endpoint.state in (Endpoint.State.PENDING_APPROVAL, Endpoint.State.FAILED):
            withdrawn = endpoint.state == Endpoint.State.PENDING_APPROVAL
            _transition(
                endpoint,
                actor=actor,
                to=Endpoint.State.DELETED,
                message="Withdrawn before approval." if withdrawn else "Deleted after it failed.",
                action="endpoint.withdraw" if withdrawn else "endpoint.delete",
                extra={"deleted_at": timezone.now()},
            )
            return endpoint
        # An apply or update that has not finished will never finish now; left open, a pending one would look
        # like work still to do to every reconcile.
        Operation.objects.filter(
            endpoint=endpoint, kind__in=(Operation.Kind.APPLY, Operation.Kind.UPDATE), state__in=Operation.OPEN
        ).update(
            state=Operation.State.FAILED,
            message="Cancelled: the endpoint is being deleted.",
            finished_at=timezone.now(),
        )
        _transition(
            endpoint,
            actor=actor,
            to=Endpoint.State.DELETING,
            message="Removing from the cluster.",
            action="endpoint.delete",
        )
        _enqueue_apply(endpoint, Operation.Kind.DELETE)
    return endpoint


# --- quota requests ------------------------------------------------------------------------------------------
def quota_request_create(
    *, actor: Actor, team: Team, gpu_type: GpuType, requested_limit: int | str, justification: str
) -> QuotaRequest:
    if actor.user is None:
        raise ValidationError("A quota request is made by a person.")
    errors: dict[str, str] = {}
    current = quota_fit(team=team, gpu_type=gpu_type, needed=0).limit
    limit = 0
    try:
        limit = _count(requested_limit, "requested_limit")
    except ValidationError as exc:
        errors.update({field: " ".join(messages) for field, messages in exc.message_dict.items()})
    else:
        if limit <= current:
            errors["requested_limit"] = f"The team already has {current} {gpu_type.sku}; ask for more."
    if not justification or not str(justification).strip():
        errors["justification"] = "Say what the GPUs are for."
    if errors:
        raise ValidationError(errors)
    with transaction.atomic():
        _lock_team(team)
        if QuotaRequest.objects.filter(team=team, gpu_type=gpu_type, state=QuotaRequest.State.PENDING).exists():
            raise ValidationError({"gpu_type": f"A request for {gpu_type.sku} is already waiting."})
        request = QuotaRequest(
            team=team,
            gpu_type=gpu_type,
            requested_limit=limit,
            justification=justification.strip(),
            requested_by=actor.user,
        )
        save_validated(request)
        audit_record(
            actor=actor,
            action="quota_request.create",
            target=request,
            team=team,
            after={"gpu_type": gpu_type.sku, "current": current, "requested_limit": limit},
        )
        notifications.quota_request_waiting(request, current=current)
    return request


def quota_request_approve(*, actor: Actor, request: QuotaRequest) -> QuotaRequest:
    with transaction.atomic():
        _lock_team(request.team)
        request = (
            QuotaRequest.objects.select_for_update(of=("self",)).select_related("team", "gpu_type").get(pk=request.pk)
        )
        if request.state != QuotaRequest.State.PENDING:
            raise ValidationError(f"This request is already {request.get_state_display().lower()}.")
        current = quota_fit(team=request.team, gpu_type=request.gpu_type, needed=0).limit
        reason = ""
        if request.requested_limit > current:
            quota_set(actor=actor, team=request.team, gpu_type=request.gpu_type, limit=request.requested_limit)
        else:
            # The quota grew since the request (an approval raised it): approving must never lower it.
            reason = f"The quota is already {current}; left unchanged."
        _decide(request, actor=actor, state=QuotaRequest.State.APPROVED, reason=reason)
        notifications.quota_request_decided(request)
    return request


def quota_request_deny(*, actor: Actor, request: QuotaRequest, reason: str) -> QuotaRequest:
    if not reason or not reason.strip():
        raise ValidationError({"reason": "Say why, so the team knows what to change."})
    with transaction.atomic():
        request = (
            QuotaRequest.objects.select_for_update(of=("self",)).select_related("team", "gpu_type").get(pk=request.pk)
        )
        if request.state != QuotaRequest.State.PENDING:
            raise ValidationError(f"This request is already {request.get_state_display().lower()}.")
        _decide(request, actor=actor, state=QuotaRequest.State.DENIED, reason=reason.strip())
        notifications.quota_request_decided(request)
    return request


def _decide(request: QuotaRequest, *, actor: Actor, state: str, reason: str) -> None:
    request.state, request.decision_reason = state, reason
    request.decided_by, request.decided_at = actor.user, timezone.now()
    request.save()
    audit_record(
        actor=actor,
        action=f"quota_request.{state}",
        target=request,
        team=request.team,
        before={"state": "pending"},
        after={"state": state, "reason": reason},
    )
