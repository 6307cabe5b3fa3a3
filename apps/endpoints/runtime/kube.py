"""The Kubernetes runtime: team namespaces with GPU quotas, and per endpoint a KubeRay RayService (or a plain vLLM
Deployment, Service and HorizontalPodAutoscaler), applied and read through `runtime.kubernetes.KubeApi`.

The lifecycle (`apps.endpoints.lifecycle`) calls `apply` and `observe` exactly as it does for Ray:
- `apply` makes every wanted object match its rendering (`runtime.manifests`): create what is missing, replace
  what differs (a conditional PUT; a 409 Conflict re-reads and tries again), and delete in the foreground
  every object of Pareto's on this cluster that no wanted endpoint owns. Objects without Pareto's labels are
  never touched: finding one under a name Pareto needs is an error the endpoint shows.
- `observe` reads Pareto's objects and reports, per endpoint, a `Phase` from the RayService's conditions (or the
  Deployment's replicas), and whether what runs is exactly the current rendering (an object edited or deleted by
  hand is not, so the reconciler re-applies).
One endpoint's refusal (say, a 422 from the API server) must not fail the others applied in the same pass: it is
kept in Redis for that endpoint's spec generation, and the next `observe` reports the endpoint FAILED with the
API server's message, so the lifecycle stays the only place that decides states.
"""

from __future__ import annotations

import copy
import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db.models import Sum

from apps.core.health import redis_client
from apps.inventory.models import Cluster, ClusterGpuInventory, GpuType
from apps.teams.models import GpuQuota, Team

from . import manifests as m
from .base import Observed, PermanentRuntimeError, Phase, TransientRuntimeError
from .kubernetes import (
    CRD,
    DEPLOYMENT,
    HPA,
    INGRESS,
    NAMESPACE,
    NODE,
    RAY_SERVICE,
    SERVICE,
    Conflict,
    Forbidden,
    Kind,
    KubeApi,
    NotFound,
    Unreachable,
    kind_of,
)

if TYPE_CHECKING:
    from apps.endpoints.models import Endpoint

log = logging.getLogger(__name__)

ENDPOINT_KINDS: tuple[Kind, ...] = (RAY_SERVICE, DEPLOYMENT, SERVICE, HPA, INGRESS)
RAY_CRD_NAME = "rayservices.ray.io"
_OWNER_LABELS = (m.MANAGED_BY, m.CLUSTER_LABEL, m.TEAM_LABEL, m.ENDPOINT_LABEL)
_PATIENCE = 5  # reads and writes of one object before giving up on a race with someone else's edits
# Spec fields that the API server assigns and will not let a PUT change or drop.
_KEEP_FROM_LIVE = {"Service": ("clusterIP", "clusterIPs", "ipFamilies", "ipFamilyPolicy")}

Key = tuple[str, str, str]  # kind, namespace, name


def primary_kind(cluster: Cluster) -> Kind:
    return DEPLOYMENT if cluster.kube_flavour == Cluster.KubeFlavour.DEPLOYMENT else RAY_SERVICE


def _key(obj: dict[str, Any]) -> Key:
    meta = obj.get("metadata") or {}
    return obj["kind"], meta.get("namespace") or "", meta["name"]


def _labels(obj: dict[str, Any]) -> dict[str, str]:
    return dict((obj.get("metadata") or {}).get("labels") or {})


def _terminating(obj: dict[str, Any]) -> bool:
    return bool((obj.get("metadata") or {}).get("deletionTimestamp"))


def covers(desired: Any, live: Any) -> bool:
    """Whether everything Pareto set is what the cluster holds (the API server and operators add defaults)."""
    if isinstance(desired, dict):
        return isinstance(live, dict) and all(covers(v, live.get(k)) for k, v in desired.items())
    if isinstance(desired, list):
        return (
            isinstance(live, list)
            and len(desired) == len(live)
            and all(covers(a, b) for a, b in zip(desired, live, strict=True))
        )
    return bool(desired == live)


def _owned(desired: dict[str, Any], live: dict[str, Any]) -> bool:
    """Live carries every ownership label the rendering has, with the same values."""
    wanted, found = _labels(desired), _labels(live)
    return all(found.get(label) == wanted[label] for label in _OWNER_LABELS if label in wanted)


def _autoscaled(endpoint: Endpoint) -> bool:
    return endpoint.min_replicas != endpoint.max_replicas


def _comparable(desired: dict[str, Any], *, autoscaled: bool) -> dict[str, Any]:
    """The rendering without what others own: an HPA sets the replicas of an autoscaled Deployment."""
    if desired["kind"] == "Deployment" and autoscaled:
        desired = copy.deepcopy(desired)
        desired["spec"].pop("replicas", None)
    return desired


def _matches(desired: dict[str, Any], live: dict[str, Any], *, autoscaled: bool = False) -> bool:
    want = _comparable(desired, autoscaled=autoscaled)
    meta, live_meta = want.get("metadata") or {}, live.get("metadata") or {}
    return (
        covers(meta.get("labels") or {}, live_meta.get("labels") or {})
        and covers(meta.get("annotations") or {}, live_meta.get("annotations") or {})
        and covers({k: v for k, v in want.items() if k not in ("metadata", "apiVersion", "kind")}, live)
    )


def _replacement(desired: dict[str, Any], live: dict[str, Any], *, autoscaled: bool) -> dict[str, Any]:
    """The PUT body: the rendering, on top of the live metadata (resourceVersion, finalizers, others' labels)."""
    body = copy.deepcopy(desired)
    meta = copy.deepcopy(live.get("metadata") or {})
    meta.pop("managedFields", None)
    meta["labels"] = {**(meta.get("labels") or {}), **(desired["metadata"].get("labels") or {})}
    meta["annotations"] = {**(meta.get("annotations") or {}), **(desired["metadata"].get("annotations") or {})}
    body["metadata"] = meta
    live_spec = live.get("spec") or {}
    if "spec" not in desired and live_spec:
        body["spec"] = copy.deepcopy(live_spec)
    for name in _KEEP_FROM_LIVE.get(desired["kind"], ()):
        if name in live_spec:
            body["spec"][name] = copy.deepcopy(live_spec[name])
    if desired["kind"] == "Deployment" and autoscaled and "replicas" in live_spec:
        body["spec"]["replicas"] = live_spec["replicas"]
    return body


def ensure(api: KubeApi, desired: dict[str, Any], *, autoscaled: bool = False) -> str:
    """Make one object match its rendering. Returns what happened: created, updated, unchanged or terminating."""
    kind = kind_of(desired)
    meta = desired["metadata"]
    name, namespace = meta["name"], meta.get("namespace")
    label = f"{kind.kind} {namespace + '/' if namespace else ''}{name}"
    for _ in range(_PATIENCE):
        live = api.get(kind, name, namespace)
        if live is None:
            try:
                api.create(desired)
            except Conflict:  # AlreadyExists: made meanwhile by someone else; read it and decide again
                continue
            return "created"
        if not _owned(desired, live):
            raise PermanentRuntimeError(
                f"{label} already exists and is not Pareto's (it lacks Pareto's labels); Pareto never changes "
                "objects it did not create. Remove or rename it."
            )
        if _terminating(live):
            return "terminating"  # on its way out (deleted by hand?): a later apply creates it again
        if _matches(desired, live, autoscaled=autoscaled):
            return "unchanged"
        try:
            api.replace(_replacement(desired, live, autoscaled=autoscaled))
        except (Conflict, NotFound):  # changed or deleted since we read it: read again
            continue
        return "updated"
    raise TransientRuntimeError(f"{label} kept changing while Pareto updated it; will try again.")


# --- quota -------------------------------------------------------------------------------------------------------
def team_gpus(cluster: Cluster, team: Team) -> int:
    """The GPUs a team's namespace on this cluster may request: its approved quota for the GPU types the cluster
    has, and never less than what its endpoints there already hold (a lower quota must not block their Pods)."""
    from apps.endpoints.models import Endpoint
    from apps.endpoints.selectors import RESERVATION

    holding = Endpoint.objects.filter(cluster=cluster, team=team, state__in=Endpoint.RESERVING)
    types = set(ClusterGpuInventory.objects.filter(cluster=cluster).values_list("gpu_type_id", flat=True))
    types |= set(holding.values_list("gpu_type_id", flat=True))
    quota = GpuQuota.objects.filter(team=team, gpu_type_id__in=types).aggregate(total=Sum("limit"))["total"] or 0
    held = holding.aggregate(total=Sum(RESERVATION))["total"] or 0
    return max(int(quota), int(held))


def ensure_team(api: KubeApi, cluster: Cluster, team: Team) -> None:
    """The team's namespace (only if none of that name exists that is not Pareto's), its quota and limits."""
    gpus = team_gpus(cluster, team)
    namespace, *rest = m.team_manifests(team, gpus)
    name = namespace["metadata"]["name"]
    live = api.get(NAMESPACE, name)
    if live is not None and not _owned(namespace, live):
        raise PermanentRuntimeError(
            f"Namespace {name} exists and is not managed by Pareto (label {m.MANAGED_BY}={m.MANAGER} with "
            f"{m.TEAM_LABEL}={team.slug}); Pareto never touches namespaces it did not create."
        )
    if live is not None and _terminating(live):
        raise TransientRuntimeError(f"Namespace {name} is being deleted; Pareto will create it again afterwards.")
    ensure(api, namespace)
    for obj in rest:
        ensure(api, obj)


def sync_team(cluster: Cluster, team: Team) -> bool:
    """Bring one team's namespace objects on a cluster up to date (after a quota change). A team with no GPUs
    there and no namespace yet gets none. Returns whether the namespace exists afterwards."""
    with KubeApi.for_cluster(cluster) as api:
        if team_gpus(cluster, team) == 0 and api.get(NAMESPACE, m.namespace_name(team)) is None:
            return False
        ensure_team(api, cluster, team)
        return True


def teams_on(api: KubeApi, cluster: Cluster) -> list[Team]:
    """Teams that need a namespace here: a quota for one of the cluster's GPU types, GPUs held by endpoints, or a
    Pareto namespace already (its quota must follow the team's, down to zero)."""
    from apps.endpoints.models import Endpoint

    types = ClusterGpuInventory.objects.filter(cluster=cluster).values_list("gpu_type_id", flat=True)
    ids = set(GpuQuota.objects.filter(gpu_type_id__in=types, limit__gt=0).values_list("team_id", flat=True))
    ids |= set(Endpoint.objects.filter(cluster=cluster, state__in=Endpoint.RESERVING).values_list("team_id", flat=True))
    namespaces, _ = api.list(NAMESPACE, label_selector=f"{m.MANAGED_BY}={m.MANAGER}")
    slugs = {_labels(ns).get(m.TEAM_LABEL) for ns in namespaces}
    return list(Team.objects.filter(pk__in=ids) | Team.objects.filter(slug__in=[s for s in slugs if s]))


def sync_namespaces(cluster: Cluster) -> list[str]:
    """Every team namespace of the cluster, restored and brought to the current quotas. Returns the namespaces."""
    with KubeApi.for_cluster(cluster) as api:
        teams = sorted(teams_on(api, cluster), key=lambda t: t.slug)
        errors: list[str] = []
        for team in teams:
            try:
                ensure_team(api, cluster, team)
            except PermanentRuntimeError as exc:
                if isinstance(exc, Unreachable):
                    raise
                errors.append(str(exc))
        if errors:
            log.warning("cluster %s: team namespaces not synced: %s", cluster.pk, "; ".join(errors))
        return [m.namespace_name(t) for t in teams]


# --- per-endpoint refusals -----------------------------------------------------------------------------------------
def _refusal_key(endpoint: Endpoint) -> str:
    return f"pareto:kube:refused:{endpoint.pk}"


def _refuse(endpoint: Endpoint, message: str) -> None:
    value = json.dumps({"generation": endpoint.generation, "message": message})
    redis_client().set(_refusal_key(endpoint), value, ex=settings.PARETO_DEPLOY_DEADLINE_SECONDS + 3600)


def _forget_refusal(endpoint: Endpoint) -> None:
    redis_client().delete(_refusal_key(endpoint))


def _refusal(endpoint: Endpoint) -> str:
    raw = redis_client().get(_refusal_key(endpoint))
    if not raw:
        return ""
    try:
        data = json.loads(raw)
    except ValueError:
        return ""
    return str(data.get("message") or "") if data.get("generation") == endpoint.generation else ""


# --- reading status --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Status:
    phase: Phase
    message: str = ""
    replicas: int = 0
    settled: bool = True  # the controller has seen the object's current generation


def _conditions(obj: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {str(c.get("type")): c for c in ((obj.get("status") or {}).get("conditions") or [])}


def _settled(obj: dict[str, Any]) -> bool:
    status = obj.get("status") or {}
    return int(status.get("observedGeneration") or 0) >= int((obj.get("metadata") or {}).get("generation") or 0)


def rayservice_status(obj: dict[str, Any], app_name: str) -> Status:
    status = obj.get("status") or {}
    conditions = _conditions(obj)
    ready = conditions.get("Ready") or {}
    upgrading = (conditions.get("UpgradeInProgress") or {}).get("status") == "True"
    active = status.get("activeServiceStatus") or {}
    app = (active.get("applicationStatuses") or {}).get(app_name) or {}
    cluster_status = active.get("rayClusterStatus") or {}
    replicas = int(cluster_status.get("readyWorkerReplicas") or cluster_status.get("availableWorkerReplicas") or 0)
    settled = _settled(obj) and not upgrading and not (status.get("pendingServiceStatus") or {}).get("rayClusterName")
    said = str(ready.get("message") or "").strip()
    if ready.get("status") == "False" and ready.get("reason") in ("ValidationFailed", "InitializingTimeout"):
        return Status(Phase.FAILED, f"{ready.get('reason')}: {said or 'no message'}", replicas, _settled(obj))
    app_status = str(app.get("status") or "")
    app_message = _app_message(app)
    if app_status == "DEPLOY_FAILED":
        return Status(Phase.FAILED, app_message or "The Serve application failed to deploy.", replicas, settled)
    if ready.get("status") == "True":
        if app_status == "RUNNING":
            return Status(Phase.RUNNING, "", replicas, settled)
        if app_status == "UNHEALTHY":
            return Status(Phase.UNHEALTHY, app_message or "The Serve application is unhealthy.", replicas, settled)
        return Status(Phase.DEPLOYING, app_message or f"Serve application {app_status or 'starting'}.", replicas, False)
    reason = str(ready.get("reason") or "")
    message = "; ".join(p for p in (f"{reason}: {said}" if reason else said, app_message) if p)
    return Status(Phase.DEPLOYING, message or "Waiting for KubeRay to start the Ray cluster.", replicas, False)


def _app_message(app: dict[str, Any]) -> str:
    parts = [str(app.get("message") or "").strip()]
    for name, deployment in (app.get("serveDeploymentStatuses") or {}).items():
        text = str(deployment.get("message") or "").strip()
        if text and deployment.get("status") != "HEALTHY":
            parts.append(f"{name}: {text}")
    return "\n".join(p for p in parts if p)


def deployment_status(obj: dict[str, Any]) -> Status:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    conditions = _conditions(obj)
    progressing = conditions.get("Progressing") or {}
    wanted = int(spec.get("replicas", 1))
    available = int(status.get("availableReplicas") or 0)
    updated = int(status.get("updatedReplicas") or 0)
    settled = _settled(obj)
    if progressing.get("status") == "False" and progressing.get("reason") == "ProgressDeadlineExceeded":
        return Status(Phase.FAILED, f"ProgressDeadlineExceeded: {progressing.get('message', '')}", available, settled)
    if settled and available >= wanted and updated >= wanted and wanted > 0:
        return Status(Phase.RUNNING, "", available, True)
    said = [f"{available} of {wanted} replicas available."]
    for name in ("Available", "Progressing", "ReplicaFailure"):
        condition = conditions.get(name) or {}
        if condition.get("status") != "True" and condition.get("message"):
            said.append(f"{name}: {condition['message']}")
    return Status(Phase.DEPLOYING, " ".join(said), available, False)


# --- the runtime ---------------------------------------------------------------------------------------------------
@dataclass
class _Seen:
    """Pareto's objects on a cluster, by key, and whether KubeRay's CRD answered."""

    objects: dict[Key, dict[str, Any]] = field(default_factory=dict)
    rayservices_served: bool = True

    def of_endpoint(self, pk: int) -> list[dict[str, Any]]:
        return [o for o in self.objects.values() if _labels(o).get(m.ENDPOINT_LABEL) == str(pk)]


def kinds_in_use(cluster: Cluster) -> set[Kind]:
    kinds = {RAY_SERVICE} if primary_kind(cluster) is RAY_SERVICE else {DEPLOYMENT, SERVICE, HPA}
    if cluster.kube_ingress_host:
        kinds.add(INGRESS)
    return kinds


def read_ours(api: KubeApi, cluster: Cluster, kinds: Iterable[Kind] = ENDPOINT_KINDS) -> _Seen:
    """Pareto's objects of this cluster. Kinds the cluster's settings do not use are looked at too (left over
    from a change of flavour), unless Pareto's role may not list them: then it cannot have made any either."""
    seen = _Seen()
    selector = m.cluster_selector(cluster)
    needed = kinds_in_use(cluster)
    for kind in kinds:
        try:
            items, _ = api.list(kind, label_selector=selector)
        except NotFound:  # the resource type is not served: KubeRay's CRD is not installed
            if kind is RAY_SERVICE:
                seen.rayservices_served = False
                continue
            raise
        except Forbidden:
            if kind in needed:
                raise
            continue
        for item in items:
            seen.objects[_key(item)] = item
    return seen


def missing_image_reason(cluster: Cluster) -> str:
    if primary_kind(cluster) is RAY_SERVICE and not cluster.kube_ray_image:
        return f"Cluster {cluster.name} has no Ray image set; an admin sets one on the cluster's page."
    if primary_kind(cluster) is DEPLOYMENT and not cluster.kube_vllm_image:
        return f"Cluster {cluster.name} has no vLLM image set; an admin sets one on the cluster's page."
    return ""


class KubernetesRuntime:
    def apply(self, cluster: Cluster, endpoints: Sequence[Endpoint]) -> None:
        missing_image = missing_image_reason(cluster)
        if missing_image and endpoints:
            raise PermanentRuntimeError(missing_image)
        with KubeApi.for_cluster(cluster) as api:
            seen = read_ours(api, cluster)
            if primary_kind(cluster) is RAY_SERVICE and not seen.rayservices_served and endpoints:
                raise PermanentRuntimeError(
                    f"KubeRay is not installed on {cluster.name}: the API server does not serve {RAY_SERVICE}. "
                    "Install the KubeRay operator (docs/kubernetes.md) or switch the cluster to the plain vLLM "
                    "Deployment flavour."
                )
            keep: set[Key] = set()
            refused_teams: dict[int, str] = {}
            for team in {e.team_id: e.team for e in endpoints}.values():
                try:
                    ensure_team(api, cluster, team)
                except PermanentRuntimeError as exc:
                    if isinstance(exc, Unreachable):
                        raise
                    refused_teams[team.pk] = str(exc)
            for endpoint in endpoints:
                rendered = m.endpoint_manifests(endpoint)
                keep.update(_key(o) for o in rendered)
                if endpoint.team_id in refused_teams:
                    _refuse(endpoint, refused_teams[endpoint.team_id])
                    continue
                try:
                    for obj in rendered:
                        ensure(api, obj, autoscaled=_autoscaled(endpoint))
                except PermanentRuntimeError as exc:
                    if isinstance(exc, Unreachable):
                        raise
                    log.warning("cluster %s: %s refused: %s", cluster.pk, endpoint.app_name, exc)
                    _refuse(endpoint, str(exc))
                else:
                    _forget_refusal(endpoint)
            for key, obj in sorted(seen.objects.items()):
                if key not in keep and not _terminating(obj):
                    api.delete(kind_of(obj), key[2], key[1] or None)

    def observe(self, cluster: Cluster, endpoints: Sequence[Endpoint]) -> tuple[dict[int, Observed], list[str]]:
        with KubeApi.for_cluster(cluster) as api:
            seen = read_ours(api, cluster)
        result: dict[int, Observed] = {}
        for endpoint in endpoints:
            result[endpoint.pk] = self._observe_one(endpoint, seen)
        watched = {str(e.pk) for e in endpoints}
        orphans = sorted(
            f"{key[0]} {key[1]}/{key[2]}"
            for key, obj in seen.objects.items()
            if _labels(obj).get(m.ENDPOINT_LABEL) not in watched and not _terminating(obj)
        )
        return result, orphans

    def _observe_one(self, endpoint: Endpoint, seen: _Seen) -> Observed:
        rendered = m.endpoint_manifests(endpoint)
        primary = seen.objects.get(_key(rendered[0]))
        refusal = _refusal(endpoint)
        mine = seen.of_endpoint(endpoint.pk)
        if primary is None:
            if refusal:
                return Observed(Phase.FAILED, refusal, current=True)
            if any(_terminating(o) for o in mine):
                return Observed(Phase.DELETING, "Pareto's objects are being deleted.")
            return Observed(Phase.MISSING)
        if _terminating(primary):
            return Observed(Phase.DELETING, f"{primary['kind']} is being deleted.")
        if primary["kind"] == "RayService":
            status = rayservice_status(primary, endpoint.app_name)
        else:
            status = deployment_status(primary)
        autoscaled = _autoscaled(endpoint)
        wanted_keys = {_key(o) for o in rendered}
        in_place = True
        for obj in rendered:
            live = seen.objects.get(_key(obj))
            if live is None or _terminating(live) or not _matches(obj, live, autoscaled=autoscaled):
                in_place = False
        extra = any(_key(o) not in wanted_keys for o in mine)
        current = status.settled and in_place and not extra
        if refusal and not current:
            return Observed(Phase.FAILED, refusal, current=True, replicas=status.replicas)
        return Observed(status.phase, status.message, current=current, replicas=status.replicas)

    def base_url(self, cluster: Cluster, endpoint: Endpoint) -> str:
        return m.external_url(endpoint) or m.in_cluster_url(endpoint)


# --- what the cluster page shows -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class GpuCapacity:
    label: str
    value: str
    gpu_type: GpuType | None
    allocatable: int
    nodes: int


@dataclass(frozen=True)
class ClusterFacts:
    api_server: str = ""
    version: str = ""
    kuberay: bool | None = None
    gpus: tuple[GpuCapacity, ...] = ()
    error: str = ""


def _gpu_count(value: Any) -> int:
    try:
        return int(str(value))
    except ValueError:
        return 0


def cluster_facts(cluster: Cluster) -> ClusterFacts:
    """What the API server says right now: its version, whether KubeRay's CRD is there, GPUs per type from the
    nodes' labels and allocatable resources. Errors are reported, not raised: the page shows them."""
    api_server = ""
    try:
        # One quick try per call: the page waits for these answers.
        timeout = min(float(settings.PARETO_KUBE_HTTP_TIMEOUT), 5.0)
        with KubeApi.for_cluster(cluster, timeout=timeout, retries=1) as api:
            api_server = api.host
            version = api.server_version()
            kuberay = api.get(CRD, RAY_CRD_NAME) is not None
            nodes, _ = api.list(NODE)
    except (PermanentRuntimeError, TransientRuntimeError) as exc:
        return ClusterFacts(api_server=api_server, error=str(exc))
    known = list(GpuType.objects.exclude(node_selector_label="").order_by("sku"))
    totals: dict[tuple[str, str], list[int]] = {}
    for node in nodes:
        gpus = _gpu_count(((node.get("status") or {}).get("allocatable") or {}).get(m.GPU, 0))
        if not gpus:
            continue
        labels = _labels(node)
        match = next((t for t in known if labels.get(t.node_selector_label) == t.node_selector_value), None)
        key = (
            (match.node_selector_label, match.node_selector_value)
            if match
            else ("nvidia.com/gpu.product", labels.get("nvidia.com/gpu.product", "unlabelled"))
        )
        total = totals.setdefault(key, [0, 0])
        total[0] += gpus
        total[1] += 1
    by_selector = {(t.node_selector_label, t.node_selector_value): t for t in known}
    capacity = tuple(
        GpuCapacity(label=k[0], value=k[1], gpu_type=by_selector.get(k), allocatable=v[0], nodes=v[1])
        for k, v in sorted(totals.items())
    )
    return ClusterFacts(api_server=api_server, version=version, kuberay=kuberay, gpus=capacity)
