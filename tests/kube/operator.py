"""A small simulated KubeRay operator and kube-controller-manager, working on the fake API server's store.

`step()` is one reconcile pass over every object, the way the controllers would react, so tests decide exactly
when the cluster moves. What happens to a RayService follows KubeRay 1.3+:
- validation first (name a DNS-1035 label of at most 40 characters, serveConfigV2 a YAML document with
  applications, containers in every group, minReplicas <= maxReplicas, a well-formed ray.io/initializing-timeout):
  a failure is the Ready condition False with reason ValidationFailed;
- a new RayService is Initializing with a pending RayCluster; on the next pass its worker Pods need the GPUs of
  the worker group, which the namespace's ResourceQuota must allow (else it stays Initializing and says so);
  then the RayCluster becomes active, every Serve application RUNNING, Ready True (NonZeroServeEndpoints);
- a spec change is seen (observedGeneration) and rolled out: a serveConfigV2-only change in place (applications
  DEPLOYING, then RUNNING), a cluster change as a zero-downtime upgrade (UpgradeInProgress, a pending cluster);
- `behaviour[name]` scripts failures: "reject" (ValidationFailed), "initializing_timeout" (Ready False,
  InitializingTimeout), "deploy_failed" (the application DEPLOY_FAILED with Serve's message), "unhealthy",
  "stuck" (Initializing forever);
- a RayService being deleted goes once its RayCluster is gone (the foreground-deletion finalizer is removed).
Deployments: the controller-manager sets replicas and conditions (or ProgressDeadlineExceeded for "crashloop");
an HPA keeps its Deployment's replicas within min and max. The garbage collector removes `foregroundDeletion`.
"""

from __future__ import annotations

import copy
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import yaml

from .apiserver import FakeApiServer, now

DNS1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
GO_DURATION = re.compile(r"^(\d+(\.\d+)?(ns|us|ms|s|m|h))+$")
MAX_RAYSERVICE_NAME = 40


def _condition(kind: str, status: str, reason: str, message: str, generation: int) -> dict[str, Any]:
    return {
        "type": kind,
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": now(),
        "observedGeneration": generation,
    }


def _gpus(container: dict[str, Any]) -> int:
    return int(str(((container.get("resources") or {}).get("requests") or {}).get("nvidia.com/gpu", 0)))


def _cluster_part(spec: dict[str, Any]) -> dict[str, Any]:
    """What makes KubeRay build a new RayCluster: the cluster config less the worker groups' replica counts."""
    part = copy.deepcopy(spec.get("rayClusterConfig") or {})
    for group in part.get("workerGroupSpecs") or []:
        for name in ("replicas", "minReplicas", "maxReplicas"):
            group.pop(name, None)
    return part


@dataclass
class SimulatedOperator:
    api: FakeApiServer
    behaviour: dict[str, str] = field(default_factory=dict)
    # What each RayService ran last (its spec), to tell an in-place Serve update from a cluster upgrade.
    applied: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    clusters: int = 0

    def step(self, times: int = 1) -> None:
        for _ in range(times):
            for obj in self.api.list("RayService"):
                self._rayservice(obj)
            for obj in self.api.list("HorizontalPodAutoscaler"):
                self._hpa(obj)
            for obj in self.api.list("Deployment"):
                self._deployment(obj)
            self._garbage_collect()

    def settle(self, times: int = 4) -> None:
        self.step(times)

    @contextmanager
    def running(self, interval: float = 0.1) -> Iterator[None]:
        """Reconcile in the background while a test waits on a watch."""
        stop = threading.Event()

        def loop() -> None:
            while not stop.is_set():
                self.step()
                stop.wait(interval)

        thread = threading.Thread(target=loop, name="simulated-operator", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join(timeout=5)

    # -- RayService -------------------------------------------------------------------------------------------------
    def _invalid(self, obj: dict[str, Any]) -> str:
        name = obj["metadata"]["name"]
        if len(name) > MAX_RAYSERVICE_NAME:
            return (
                "The RayService metadata is invalid: RayService name should be no more than "
                f"{MAX_RAYSERVICE_NAME} characters"
            )
        if not DNS1035.match(name):
            return f"The RayService metadata is invalid: RayService name should be a valid DNS1035 label: {name}"
        timeout = (obj["metadata"].get("annotations") or {}).get("ray.io/initializing-timeout")
        if timeout and not (GO_DURATION.match(timeout) or (timeout.isdigit() and int(timeout) > 0)):
            return (
                "The RayService metadata is invalid: annotation ray.io/initializing-timeout has invalid format: "
                f"{timeout}"
            )
        spec = obj.get("spec") or {}
        try:
            serve = yaml.safe_load(spec.get("serveConfigV2") or "")
        except yaml.YAMLError as exc:
            return f"The RayService spec is invalid: serveConfigV2 is not valid YAML: {exc}"
        if not isinstance(serve, dict) or not isinstance(serve.get("applications"), list):
            return "The RayService spec is invalid: serveConfigV2 has no applications"
        cluster = spec.get("rayClusterConfig") or {}
        head = ((cluster.get("headGroupSpec") or {}).get("template") or {}).get("spec") or {}
        if not head.get("containers"):
            return "The RayService spec is invalid: headGroupSpec should have at least one container"
        for group in cluster.get("workerGroupSpecs") or []:
            if not ((group.get("template") or {}).get("spec") or {}).get("containers"):
                return "The RayService spec is invalid: workerGroupSpec should have at least one container"
            if group.get("minReplicas", 0) > group.get("maxReplicas", 0):
                return (
                    f"The RayService spec is invalid: worker group {group.get('groupName')} has minReplicas "
                    f"{group.get('minReplicas')} greater than maxReplicas {group.get('maxReplicas')}"
                )
        return ""

    def _app_names(self, obj: dict[str, Any]) -> list[str]:
        serve = yaml.safe_load(obj["spec"]["serveConfigV2"])
        return [str(app["name"]) for app in serve["applications"]]

    def _quota_problem(self, obj: dict[str, Any]) -> str:
        """Worker Pods of this RayService that the namespace's quota would refuse."""
        namespace = obj["metadata"]["namespace"]
        wanted = 0
        for group in obj["spec"]["rayClusterConfig"].get("workerGroupSpecs") or []:
            per_pod = sum(_gpus(c) for c in group["template"]["spec"]["containers"])
            wanted += per_pod * int(group.get("minReplicas", group.get("replicas", 0)))
        if not wanted:
            return ""
        used = 0
        for other in self.api.list("RayService", namespace):
            if other["metadata"]["name"] == obj["metadata"]["name"]:
                continue
            if (other.get("status") or {}).get("activeServiceStatus", {}).get("rayClusterName"):
                for group in other["spec"]["rayClusterConfig"].get("workerGroupSpecs") or []:
                    per_pod = sum(_gpus(c) for c in group["template"]["spec"]["containers"])
                    used += per_pod * int(group.get("minReplicas", 0))
        for quota in self.api.list("ResourceQuota", namespace):
            hard = int(str((quota.get("spec") or {}).get("hard", {}).get("requests.nvidia.com/gpu", "-1")))
            if hard >= 0 and used + wanted > hard:
                return (
                    f'pods "{obj["metadata"]["name"]}-gpu-worker" is forbidden: exceeded quota: '
                    f"{quota['metadata']['name']}, requested: requests.nvidia.com/gpu={wanted}, used: "
                    f"requests.nvidia.com/gpu={used}, limited: requests.nvidia.com/gpu={hard}"
                )
        return ""

    def _rayservice(self, obj: dict[str, Any]) -> None:
        meta = obj["metadata"]
        name, namespace = meta["name"], meta["namespace"]
        key = (namespace, name)
        generation = int(meta.get("generation", 1))
        status = copy.deepcopy(obj.get("status") or {})
        if meta.get("deletionTimestamp"):
            self.applied.pop(key, None)
            # KubeRay's own finalizer, then the garbage collector once the RayCluster and its Pods are gone.
            self.api.finish_deletion("RayService", name, namespace, "ray.io/rayservice-finalizer")
            self.api.finish_deletion("RayService", name, namespace, "foregroundDeletion")
            return
        conditions = {c["type"]: c for c in status.get("conditions") or []}
        ready = conditions.get("Ready", {})
        if ready.get("reason") == "InitializingTimeout":
            return  # terminal until the RayService is deleted and made again
        problem = self._invalid(obj)
        if self.behaviour.get(name) == "reject":  # what a stricter KubeRay release would refuse
            problem = (
                "The RayService spec is invalid: resource fields should not be set in both rayStartParams and "
                "Resources for gpu group; please use only one"
            )
        if problem:
            status.update(
                observedGeneration=generation,
                conditions=[_condition("Ready", "False", "ValidationFailed", problem, generation)],
            )
            self.api.set_status("RayService", name, namespace, status)
            return
        behaviour = self.behaviour.get(name, "ready")
        apps = self._app_names(obj)
        active = status.get("activeServiceStatus") or {}
        if int(status.get("observedGeneration", 0)) < generation:
            previous = self.applied.get(key)
            self.applied[key] = copy.deepcopy(obj["spec"])
            status["observedGeneration"] = generation
            if not active.get("rayClusterName"):
                self.clusters += 1
                status["pendingServiceStatus"] = {"rayClusterName": f"{name}-{self.clusters:05d}"}
                status["conditions"] = [
                    _condition("Ready", "False", "Initializing", "RayService is initializing", generation),
                    _condition("UpgradeInProgress", "False", "NoActiveCluster", "No active RayCluster", generation),
                ]
            elif previous is not None and _cluster_part(previous) != _cluster_part(obj["spec"]):
                self.clusters += 1
                status["pendingServiceStatus"] = {"rayClusterName": f"{name}-{self.clusters:05d}"}
                status["conditions"] = [
                    _condition(
                        "Ready",
                        "True",
                        "NonZeroServeEndpoints",
                        "Number of serve endpoints is greater than 0",
                        generation,
                    ),
                    _condition("UpgradeInProgress", "True", "BothActivePendingClustersExist", "Upgrading", generation),
                ]
            else:  # Serve config only: updated in place on the active cluster
                active["applicationStatuses"] = {
                    app: {"status": "DEPLOYING", "message": f"Deploying app '{app}'."} for app in apps
                }
                status["activeServiceStatus"] = active
            status["lastUpdateTime"] = now()
            self.api.set_status("RayService", name, namespace, status)
            return
        if behaviour == "stuck":
            return
        if behaviour == "initializing_timeout" and not active.get("rayClusterName"):
            timeout = (meta.get("annotations") or {}).get("ray.io/initializing-timeout", "")
            status["conditions"] = [
                _condition(
                    "Ready",
                    "False",
                    "InitializingTimeout",
                    f"RayService failed to become ready within the initializing timeout of {timeout}; "
                    "the RayCluster is being deleted",
                    generation,
                )
            ]
            status["pendingServiceStatus"] = {}
            self.api.set_status("RayService", name, namespace, status)
            return
        pending = (status.get("pendingServiceStatus") or {}).get("rayClusterName")
        if pending or not active.get("rayClusterName"):
            problem = self._quota_problem(obj)
            if problem:
                message = f"RayService is initializing; {problem}"
                if ready.get("message") != message:
                    status["conditions"] = [
                        _condition(
                            "Ready",
                            ready.get("status", "False"),
                            ready.get("reason", "Initializing"),
                            message,
                            generation,
                        ),
                        conditions.get("UpgradeInProgress")
                        or _condition("UpgradeInProgress", "False", "NoActiveCluster", "", generation),
                    ]
                    self.api.set_status("RayService", name, namespace, status)
                return
            active = {"rayClusterName": pending or f"{name}-{self.clusters:05d}"}
        workers = (obj["spec"]["rayClusterConfig"].get("workerGroupSpecs") or [{}])[0]
        replicas = int(workers.get("minReplicas", workers.get("replicas", 0)))
        app_state = {"deploy_failed": "DEPLOY_FAILED", "unhealthy": "UNHEALTHY"}.get(behaviour, "RUNNING")
        app_message = {
            "DEPLOY_FAILED": "Deploying application failed: RuntimeError: CUDA error: no kernel image is available",
            "UNHEALTHY": "The deployment 'LLMServer' is UNHEALTHY: replica health check failed",
        }.get(app_state, "")
        active["applicationStatuses"] = {
            app: {
                "status": app_state,
                "message": app_message,
                "serveDeploymentStatuses": {
                    "LLMServer": {
                        "status": "HEALTHY" if app_state == "RUNNING" else "UNHEALTHY",
                        "message": app_message,
                    },
                    "OpenAiIngress": {"status": "HEALTHY"},
                },
            }
            for app in apps
        }
        active["rayClusterStatus"] = {
            "state": "ready",
            "desiredWorkerReplicas": replicas,
            "availableWorkerReplicas": replicas,
            "readyWorkerReplicas": replicas,
        }
        status.update(
            activeServiceStatus=active,
            pendingServiceStatus={},
            numServeEndpoints=1,
            serviceStatus="Running",
            conditions=[
                _condition(
                    "Ready", "True", "NonZeroServeEndpoints", "Number of serve endpoints is greater than 0", generation
                ),
                _condition("UpgradeInProgress", "False", "NoPendingCluster", "No pending cluster exists", generation),
            ],
        )
        self.api.set_status("RayService", name, namespace, status)

    # -- Deployments and HPAs -------------------------------------------------------------------------------------
    def _deployment(self, obj: dict[str, Any]) -> None:
        meta = obj["metadata"]
        name, namespace = meta["name"], meta["namespace"]
        if meta.get("deletionTimestamp"):
            self.api.finish_deletion("Deployment", name, namespace, "foregroundDeletion")
            return
        generation = int(meta.get("generation", 1))
        status = copy.deepcopy(obj.get("status") or {})
        replicas = int(obj["spec"].get("replicas", 1))
        behaviour = self.behaviour.get(name, "ready")
        if int(status.get("observedGeneration", 0)) < generation:
            status.update(
                observedGeneration=generation,
                replicas=replicas,
                updatedReplicas=0,
                readyReplicas=0,
                availableReplicas=0,
                conditions=[
                    {
                        "type": "Available",
                        "status": "False",
                        "reason": "MinimumReplicasUnavailable",
                        "message": "Deployment does not have minimum availability.",
                    },
                    {
                        "type": "Progressing",
                        "status": "True",
                        "reason": "ReplicaSetUpdated",
                        "message": f'ReplicaSet "{name}-7d9f" is progressing.',
                    },
                ],
            )
        elif behaviour == "stuck":
            return
        elif behaviour == "crashloop":
            status["conditions"] = [
                {
                    "type": "Available",
                    "status": "False",
                    "reason": "MinimumReplicasUnavailable",
                    "message": "Deployment does not have minimum availability.",
                },
                {
                    "type": "Progressing",
                    "status": "False",
                    "reason": "ProgressDeadlineExceeded",
                    "message": f'ReplicaSet "{name}-7d9f" has timed out progressing.',
                },
            ]
        else:
            status.update(
                replicas=replicas, updatedReplicas=replicas, readyReplicas=replicas, availableReplicas=replicas
            )
            status["conditions"] = [
                {
                    "type": "Available",
                    "status": "True",
                    "reason": "MinimumReplicasAvailable",
                    "message": "Deployment has minimum availability.",
                },
                {
                    "type": "Progressing",
                    "status": "True",
                    "reason": "NewReplicaSetAvailable",
                    "message": f'ReplicaSet "{name}-7d9f" has successfully progressed.',
                },
            ]
        self.api.set_status("Deployment", name, namespace, status)

    def _hpa(self, obj: dict[str, Any]) -> None:
        meta = obj["metadata"]
        if meta.get("deletionTimestamp"):
            self.api.finish_deletion("HorizontalPodAutoscaler", meta["name"], meta["namespace"], "foregroundDeletion")
            return
        spec = obj["spec"]
        target = self.api.get("Deployment", spec["scaleTargetRef"]["name"], meta["namespace"])
        if target is None:
            return
        current = int(target["spec"].get("replicas", 1))
        desired = min(max(current, int(spec.get("minReplicas", 1))), int(spec["maxReplicas"]))
        if desired != current:
            self.api.edit(
                "Deployment",
                target["metadata"]["name"],
                meta["namespace"],
                lambda d: d["spec"].__setitem__("replicas", desired),
            )
        self.api.set_status(
            "HorizontalPodAutoscaler",
            meta["name"],
            meta["namespace"],
            {"currentReplicas": current, "desiredReplicas": desired, "lastScaleTime": now()},
        )

    def _garbage_collect(self) -> None:
        for kind in ("Service", "Ingress", "ResourceQuota", "LimitRange"):
            for obj in self.api.list(kind):
                meta = obj["metadata"]
                if meta.get("deletionTimestamp"):
                    self.api.finish_deletion(kind, meta["name"], meta.get("namespace", ""), "foregroundDeletion")


def wait_for(condition: Any, timeout: float = 10.0, interval: float = 0.05) -> Any:
    """Poll `condition()` until it returns something truthy; fail the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(interval)
