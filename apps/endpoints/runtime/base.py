"""What the endpoint lifecycle needs from a runtime (Ray today, Kubernetes next), and nothing more.

A runtime client turns the desired set of endpoints on one cluster into that cluster's objects (`apply`) and
reports what it sees per endpoint (`observe`). The lifecycle (`apps.endpoints.lifecycle`) decides states from
those observations, identically for every runtime.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from apps.endpoints.models import Endpoint
    from apps.inventory.models import Cluster


class RuntimeError_(Exception):
    """Base of runtime errors. `transient` says whether trying again can help."""

    transient = False


class TransientRuntimeError(RuntimeError_):
    """Timeouts, connection failures, 5xx, 429: retry with backoff."""

    transient = True


class PermanentRuntimeError(RuntimeError_):
    """4xx and validation errors: stop and show the message to the person who asked."""


class Phase(StrEnum):
    MISSING = "missing"  # nothing of this endpoint on the cluster
    DEPLOYING = "deploying"
    RUNNING = "running"
    FAILED = "failed"
    UNHEALTHY = "unhealthy"
    DELETING = "deleting"


@dataclass(frozen=True)
class Observed:
    phase: Phase
    message: str = ""
    # Whether what runs is the spec Pareto last applied (an update shows the old spec RUNNING for a moment).
    current: bool = True
    replicas: int = 0


class Runtime(Protocol):
    def apply(self, cluster: Cluster, endpoints: Sequence[Endpoint]) -> None:
        """Make the cluster run exactly `endpoints` among Pareto's objects; leave everything else alone."""

    def observe(self, cluster: Cluster, endpoints: Sequence[Endpoint]) -> tuple[dict[int, Observed], list[str]]:
        """Per endpoint id what runs, and the names of Pareto-owned objects that no endpoint in `endpoints` has."""

    def base_url(self, cluster: Cluster, endpoint: Endpoint) -> str:
        """The OpenAI-compatible base URL (ending in /v1) clients use."""


def runtime_for(cluster: Cluster) -> Runtime:
    from apps.inventory.models import Cluster as ClusterModel

    if cluster.runtime == ClusterModel.Runtime.RAY:
        from .ray import RayRuntime

        return RayRuntime()
    if cluster.runtime == ClusterModel.Runtime.KUBERNETES:
        from .kube import KubernetesRuntime

        return KubernetesRuntime()
    raise PermanentRuntimeError(f"Runtime {cluster.runtime!r} is not supported yet.")
