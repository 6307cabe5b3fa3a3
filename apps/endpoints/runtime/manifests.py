"""The Kubernetes objects of Pareto's endpoints and team namespaces, rendered as plain JSON-ready dicts.

Pure functions of database rows and settings: no API calls here (`runtime.kube` applies them, `runtime.kubernetes`
talks to the API server). Two engine flavours, picked by `Cluster.kube_flavour`:
- `rayservice`: one KubeRay `RayService` (ray.io/v1) per endpoint. `spec.serveConfigV2` holds the very application
  the Ray runtime sends to a Ray cluster (`serve_config.serve_application`); `spec.rayClusterConfig` has a CPU-only
  head and one GPU worker group, one worker Pod per replica.
- `deployment`: a plain vLLM `Deployment`, its `Service`, and an `autoscaling/v2` HorizontalPodAutoscaler when the
  endpoint may scale (min != max replicas), for clusters without KubeRay.
Every object carries Pareto's labels (managed-by, cluster, team, endpoint) so the reconciler finds what is its own,
and owner annotations saying which endpoint (and spec generation) it belongs to.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

import yaml
from django.conf import settings

from apps.inventory.models import Cluster

from .serve_config import serve_application

if TYPE_CHECKING:
    from apps.endpoints.models import Endpoint
    from apps.teams.models import Team

LABEL_DOMAIN = "pareto.dev"
MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGER = "pareto"
CLUSTER_LABEL = f"{LABEL_DOMAIN}/cluster"
TEAM_LABEL = f"{LABEL_DOMAIN}/team"
ENDPOINT_LABEL = f"{LABEL_DOMAIN}/endpoint"
OWNER_ANNOTATION = f"{LABEL_DOMAIN}/owner"
GENERATION_ANNOTATION = f"{LABEL_DOMAIN}/generation"
# KubeRay gives up on a RayService that is not ready within this (reason InitializingTimeout); set to Pareto's own
# deadline so that the operator and Pareto agree on when a rollout has failed.
RAY_INITIALIZING_TIMEOUT = "ray.io/initializing-timeout"

GPU = "nvidia.com/gpu"
SERVE_PORT = 8000
HEAD_CPU, HEAD_MEMORY = "2", "8Gi"
# Per GPU of a worker: CPUs for the engine's processes, and host memory that weights are staged through.
WORKER_CPU_PER_GPU = 4
MIN_WORKER_MEMORY_GIB = 16
# GPU node pools are tainted so that nothing else lands on them: NVIDIA's device-plugin convention, and the
# `sku=gpu:NoSchedule` taint AKS documents for GPU node pools.
GPU_TOLERATIONS: list[dict[str, Any]] = [
    {"key": GPU, "operator": "Exists", "effect": "NoSchedule"},
    {"key": "sku", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"},
]
HF_TOKEN_KEY = "HF_TOKEN"  # noqa: S105  (the key inside the cluster's Secret, not a secret)
# vLLM flags that are plain switches (no --no-... form): false means "leave the flag out".
_SWITCHES = frozenset({"enforce_eager"})


# --- names, labels, URLs ---------------------------------------------------------------------------------------
def namespace_name(team: Team) -> str:
    return f"{settings.PARETO_KUBE_NAMESPACE_PREFIX}{team.slug}"


def object_name(endpoint: Endpoint) -> str:
    """Every object of an endpoint has the app name ("pareto-<pk>"): a DNS-1035 label, as KubeRay requires."""
    return endpoint.app_name


def cluster_selector(cluster: Cluster) -> str:
    """The label selector of everything Pareto made on this cluster."""
    return f"{MANAGED_BY}={MANAGER},{CLUSTER_LABEL}={cluster.pk}"


def endpoint_labels(endpoint: Endpoint) -> dict[str, str]:
    return {
        MANAGED_BY: MANAGER,
        CLUSTER_LABEL: str(endpoint.cluster_id),
        TEAM_LABEL: endpoint.team.slug,
        ENDPOINT_LABEL: str(endpoint.pk),
    }


def _endpoint_metadata(endpoint: Endpoint, *, annotations: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "name": object_name(endpoint),
        "namespace": namespace_name(endpoint.team),
        "labels": endpoint_labels(endpoint),
        "annotations": {
            OWNER_ANNOTATION: f"{endpoint.team.slug}/{endpoint.name}",
            GENERATION_ANNOTATION: str(endpoint.generation),
            **(annotations or {}),
        },
    }


def serve_service_name(endpoint: Endpoint) -> str:
    """The Service in front of the endpoint's HTTP port: KubeRay names the RayService's `<name>-serve-svc`."""
    if endpoint.cluster.kube_flavour == Cluster.KubeFlavour.DEPLOYMENT:
        return object_name(endpoint)
    return f"{object_name(endpoint)}-serve-svc"


def in_cluster_url(endpoint: Endpoint) -> str:
    host = f"{serve_service_name(endpoint)}.{namespace_name(endpoint.team)}.svc.cluster.local"
    # Ray Serve routes by the application's prefix; a plain vLLM server answers at the root.
    prefix = "" if endpoint.cluster.kube_flavour == Cluster.KubeFlavour.DEPLOYMENT else endpoint.route_prefix
    return f"http://{host}:{SERVE_PORT}{prefix}/v1"


def external_url(endpoint: Endpoint) -> str:
    host = endpoint.cluster.kube_ingress_host
    return f"https://{host}{endpoint.route_prefix}/v1" if host else ""


# --- per team ----------------------------------------------------------------------------------------------------
def namespace_labels(team: Team) -> dict[str, str]:
    return {MANAGED_BY: MANAGER, TEAM_LABEL: team.slug}


def namespace_manifest(team: Team) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {
            "name": namespace_name(team),
            "labels": namespace_labels(team),
            "annotations": {OWNER_ANNOTATION: team.slug},
        },
    }


def resource_quota_manifest(team: Team, gpus: int) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ResourceQuota",
        "metadata": {"name": "pareto-gpu-quota", "namespace": namespace_name(team), "labels": namespace_labels(team)},
        "spec": {"hard": {f"requests.{GPU}": str(gpus), f"limits.{GPU}": str(gpus)}},
    }


def limit_range_manifest(team: Team) -> dict[str, Any] | None:
    most = settings.PARETO_KUBE_MAX_GPUS_PER_POD
    if not most:
        return None
    return {
        "apiVersion": "v1",
        "kind": "LimitRange",
        "metadata": {"name": "pareto-gpu-limits", "namespace": namespace_name(team), "labels": namespace_labels(team)},
        "spec": {"limits": [{"type": "Container", "max": {GPU: str(most)}}]},
    }


def team_manifests(team: Team, gpus: int) -> list[dict[str, Any]]:
    """The namespace first (the others live in it), then its quota and limits."""
    objects = [namespace_manifest(team), resource_quota_manifest(team, gpus)]
    limits = limit_range_manifest(team)
    if limits is not None:
        objects.append(limits)
    return objects


# --- pieces shared by both flavours ------------------------------------------------------------------------------
def _gpu_resources(endpoint: Endpoint) -> dict[str, Any]:
    per_replica = endpoint.gpus_per_replica
    if endpoint.cluster.cpu_only:
        # A CPU-only cluster counts "GPUs" as CPUs (see serve_config); no device, no GPU quota.
        amounts = {"cpu": str(per_replica), "memory": f"{max(MIN_WORKER_MEMORY_GIB, 4 * per_replica)}Gi"}
    else:
        memory = max(MIN_WORKER_MEMORY_GIB, endpoint.gpu_type.memory_gib * per_replica)
        amounts = {"cpu": str(WORKER_CPU_PER_GPU * per_replica), "memory": f"{memory}Gi", GPU: str(per_replica)}
    return {"requests": dict(amounts), "limits": dict(amounts)}


def _placement(endpoint: Endpoint) -> dict[str, Any]:
    """Node selector of the GPU type and tolerations of GPU taints (nothing on a CPU-only cluster)."""
    if endpoint.cluster.cpu_only:
        return {}
    placement: dict[str, Any] = {"tolerations": copy.deepcopy(GPU_TOLERATIONS)}
    gpu_type = endpoint.gpu_type
    if gpu_type.node_selector_label and gpu_type.node_selector_value:
        placement["nodeSelector"] = {gpu_type.node_selector_label: gpu_type.node_selector_value}
    return placement


def _token_env(cluster: Cluster) -> list[dict[str, Any]]:
    """The model-hub token as a reference to the team namespace's Secret: the value never passes through Pareto."""
    if not cluster.kube_hf_token_secret:
        return []
    return [
        {
            "name": HF_TOKEN_KEY,
            "valueFrom": {"secretKeyRef": {"name": cluster.kube_hf_token_secret, "key": HF_TOKEN_KEY}},
        }
    ]


def _shm() -> tuple[dict[str, Any], dict[str, Any]]:
    """vLLM's tensor-parallel workers talk through /dev/shm; a container's default 64 MiB is far too small."""
    return (
        {"name": "dshm", "emptyDir": {"medium": "Memory"}},
        {"name": "dshm", "mountPath": "/dev/shm"},  # noqa: S108  (a path in the container)
    )


# --- RayService flavour ------------------------------------------------------------------------------------------
def serve_config_v2(endpoint: Endpoint) -> str:
    """`spec.serveConfigV2`: the same application the Ray runtime PUTs, as the YAML string KubeRay expects."""
    app = serve_application(endpoint)
    env_vars = (app.get("runtime_env") or {}).get("env_vars") or {}
    # serve_application copies a token from the worker's environment for plain Ray clusters; on Kubernetes the
    # token comes from a Secret reference (`_token_env`) and must never be written into a custom object.
    env_vars.pop(HF_TOKEN_KEY, None)
    if "runtime_env" in app and not env_vars:
        del app["runtime_env"]
    return yaml.safe_dump({"applications": [app]}, sort_keys=False, default_flow_style=False)


def _ray_container(name: str, image: str, resources: dict[str, Any], env: list[dict[str, Any]]) -> dict[str, Any]:
    container: dict[str, Any] = {"name": name, "image": image, "resources": resources}
    if env:
        container["env"] = env
    return container


def rayservice_manifest(endpoint: Endpoint) -> dict[str, Any]:
    cluster = endpoint.cluster
    image = cluster.kube_ray_image
    env = _token_env(cluster)
    labels = endpoint_labels(endpoint)
    head_resources = {
        "requests": {"cpu": HEAD_CPU, "memory": HEAD_MEMORY},
        "limits": {"cpu": HEAD_CPU, "memory": HEAD_MEMORY},
    }
    head = _ray_container("ray-head", image, head_resources, env)
    head["ports"] = [
        {"name": "gcs-server", "containerPort": 6379},
        {"name": "dashboard", "containerPort": 8265},
        {"name": "client", "containerPort": 10001},
        {"name": "serve", "containerPort": SERVE_PORT},
    ]
    shm_volume, shm_mount = _shm()
    worker = _ray_container("ray-worker", image, _gpu_resources(endpoint), env)
    worker["volumeMounts"] = [shm_mount]
    worker_pod: dict[str, Any] = {"containers": [worker], "volumes": [shm_volume], **_placement(endpoint)}
    deadline = settings.PARETO_DEPLOY_DEADLINE_SECONDS
    return {
        "apiVersion": "ray.io/v1",
        "kind": "RayService",
        "metadata": _endpoint_metadata(endpoint, annotations={RAY_INITIALIZING_TIMEOUT: f"{deadline}s"}),
        "spec": {
            "serveConfigV2": serve_config_v2(endpoint),
            "rayClusterConfig": {
                # The autoscaler adds and removes GPU workers between min and max as Serve asks for replicas.
                "enableInTreeAutoscaling": endpoint.min_replicas != endpoint.max_replicas,
                "headGroupSpec": {
                    # The head runs the proxy and the ingress deployment only: no GPU, so it fits any node.
                    "rayStartParams": {"num-gpus": "0", "dashboard-host": "0.0.0.0"},  # noqa: S104
                    "template": {"metadata": {"labels": dict(labels)}, "spec": {"containers": [head]}},
                },
                "workerGroupSpecs": [
                    {
                        "groupName": "gpu",
                        "replicas": endpoint.min_replicas,
                        "minReplicas": endpoint.min_replicas,
                        "maxReplicas": endpoint.max_replicas,
                        "rayStartParams": {},
                        "template": {"metadata": {"labels": dict(labels)}, "spec": worker_pod},
                    }
                ],
            },
        },
    }


# --- plain vLLM Deployment flavour ---------------------------------------------------------------------------------
def vllm_args(endpoint: Endpoint) -> list[str]:
    args = [
        "--model",
        endpoint.model.source,
        "--served-model-name",
        endpoint.served_model_id,
        "--tensor-parallel-size",
        "1" if endpoint.cluster.cpu_only else str(endpoint.gpus_per_replica),
        "--max-model-len",
        str(endpoint.max_model_len),
        "--port",
        str(SERVE_PORT),
    ]
    for name, value in sorted(endpoint.engine_args.items()):
        flag = "--" + name.replace("_", "-")
        if isinstance(value, bool):
            if value:
                args.append(flag)
            elif name not in _SWITCHES:
                args.append("--no-" + flag[2:])
        else:
            args.extend([flag, str(value)])
    return args


def vllm_deployment_manifest(endpoint: Endpoint) -> dict[str, Any]:
    cluster = endpoint.cluster
    labels = endpoint_labels(endpoint)
    selector = {MANAGED_BY: MANAGER, ENDPOINT_LABEL: str(endpoint.pk)}
    shm_volume, shm_mount = _shm()
    env = _token_env(cluster)
    if cluster.cpu_only:
        env.append({"name": "VLLM_CPU_KVCACHE_SPACE", "value": str(settings.PARETO_CPU_KVCACHE_GIB)})
    container: dict[str, Any] = {
        "name": "vllm",
        "image": cluster.kube_vllm_image,
        "args": vllm_args(endpoint),
        "ports": [{"name": "http", "containerPort": SERVE_PORT}],
        "readinessProbe": {
            "httpGet": {"path": "/health", "port": SERVE_PORT},
            "periodSeconds": 10,
            "failureThreshold": 3,
        },
        "resources": _gpu_resources(endpoint),
        "volumeMounts": [shm_mount],
    }
    if env:
        container["env"] = env
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _endpoint_metadata(endpoint),
        "spec": {
            "replicas": endpoint.min_replicas,
            "selector": {"matchLabels": selector},
            # The Deployment controller marks a rollout failed (ProgressDeadlineExceeded) at Pareto's own deadline.
            "progressDeadlineSeconds": settings.PARETO_DEPLOY_DEADLINE_SECONDS,
            # Replace one replica at a time without a surge: a surge replica needs GPUs the team may not have.
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1}},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [container], "volumes": [shm_volume], **_placement(endpoint)},
            },
        },
    }


def vllm_service_manifest(endpoint: Endpoint) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _endpoint_metadata(endpoint),
        "spec": {
            "type": "ClusterIP",
            "selector": {MANAGED_BY: MANAGER, ENDPOINT_LABEL: str(endpoint.pk)},
            "ports": [{"name": "http", "port": SERVE_PORT, "targetPort": SERVE_PORT, "protocol": "TCP"}],
        },
    }


def hpa_manifest(endpoint: Endpoint) -> dict[str, Any] | None:
    if endpoint.min_replicas == endpoint.max_replicas:
        return None
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": _endpoint_metadata(endpoint),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": object_name(endpoint)},
            "minReplicas": endpoint.min_replicas,
            "maxReplicas": endpoint.max_replicas,
            # CPU works with the metrics-server every AKS cluster has; docs/kubernetes.md shows a queue-length metric.
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}},
                }
            ],
        },
    }


# --- external access -----------------------------------------------------------------------------------------------
def ingress_manifest(endpoint: Endpoint) -> dict[str, Any] | None:
    """`https://<ingress host>/<team>/<endpoint>/v1` routed to the endpoint's Service, when the cluster has a host."""
    host = endpoint.cluster.kube_ingress_host
    if not host:
        return None
    backend = {"service": {"name": serve_service_name(endpoint), "port": {"number": SERVE_PORT}}}
    annotations: dict[str, str] = {}
    if endpoint.cluster.kube_flavour == Cluster.KubeFlavour.DEPLOYMENT:
        # vLLM answers at the root: strip the endpoint's prefix (NGINX ingress syntax; see docs/kubernetes.md).
        path: dict[str, Any] = {
            "path": f"{endpoint.route_prefix}(/|$)(.*)",
            "pathType": "ImplementationSpecific",
            "backend": backend,
        }
        annotations = {
            "nginx.ingress.kubernetes.io/use-regex": "true",
            "nginx.ingress.kubernetes.io/rewrite-target": "/$2",
        }
    else:
        # Ray Serve routes by the same prefix itself.
        path = {"path": endpoint.route_prefix, "pathType": "Prefix", "backend": backend}
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": _endpoint_metadata(endpoint, annotations=annotations),
        "spec": {"rules": [{"host": host, "http": {"paths": [path]}}]},
    }


def endpoint_manifests(endpoint: Endpoint) -> list[dict[str, Any]]:
    """Everything one endpoint needs on its cluster, the serving object first."""
    if endpoint.cluster.kube_flavour == Cluster.KubeFlavour.DEPLOYMENT:
        objects = [vllm_deployment_manifest(endpoint), vllm_service_manifest(endpoint), hpa_manifest(endpoint)]
    else:
        objects = [rayservice_manifest(endpoint)]
    objects.append(ingress_manifest(endpoint))
    return [o for o in objects if o is not None]
