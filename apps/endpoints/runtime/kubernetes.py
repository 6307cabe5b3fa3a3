"""The Kubernetes API client: the only module that imports the official `kubernetes` package.

`KubeApi` is a small dict-in, dict-out wrapper over the typed APIs (Core, Apps, Autoscaling, Networking,
Apiextensions) and CustomObjects (for KubeRay's RayService), with the API server's errors sorted the way the
lifecycle needs them:
- timeouts, dropped connections, 5xx and 429 are transient: each call is tried again a few times with backoff
  (honouring Retry-After), then `TransientRuntimeError` hands over to the Celery task's own retry;
- 404 and 409 come back as `NotFound` and `Conflict` for the caller to handle (re-read and retry, create);
- 410 Gone (a watch from a resourceVersion the server no longer has) is `Gone`: re-list, then watch again;
- any other 4xx is permanent, carrying the API server's own message (`Status.message`).
Bodies are plain dicts in the API's JSON shape; the typed calls still validate them against the client's models
before anything is sent. Answers are read raw (`_preload_content=False`), so fields this client version does not
know survive a read-modify-replace.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import urllib3
from django.conf import settings
from kubernetes import client, config, watch
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException
from pydantic import ValidationError as ModelValidationError

from .base import PermanentRuntimeError, TransientRuntimeError

if TYPE_CHECKING:
    from apps.inventory.models import Cluster


class NotFound(PermanentRuntimeError):
    pass


class Conflict(PermanentRuntimeError):
    """409: `reason` is "AlreadyExists" (create) or "Conflict" (a stale resourceVersion)."""

    def __init__(self, message: str, reason: str):
        super().__init__(message)
        self.reason = reason


class Forbidden(PermanentRuntimeError):
    """403: Pareto's account may not do this (RBAC, docs/kubernetes.md), or an admission policy said no."""


class Unreachable(PermanentRuntimeError):
    """The cluster as a whole refuses Pareto (401, untrusted TLS): no object can be applied until an admin acts."""


class Gone(TransientRuntimeError):
    """410: the resourceVersion is too old for the server; list again and watch from the list's version."""


@dataclass(frozen=True)
class Kind:
    kind: str
    api_version: str
    plural: str
    api: str = "CoreV1Api"  # the client class serving it; "" for custom resources
    stem: str = ""  # the typed methods' name part: read_namespaced_<stem>, list_<stem>_for_all_namespaces
    namespaced: bool = True

    @property
    def group(self) -> str:
        return self.api_version.rpartition("/")[0]

    @property
    def version(self) -> str:
        return self.api_version.rpartition("/")[2]

    @property
    def custom(self) -> bool:
        return not self.api

    def __str__(self) -> str:
        return f"{self.plural}.{self.group}" if self.group else self.plural


NAMESPACE = Kind("Namespace", "v1", "namespaces", stem="namespace", namespaced=False)
RESOURCE_QUOTA = Kind("ResourceQuota", "v1", "resourcequotas", stem="resource_quota")
LIMIT_RANGE = Kind("LimitRange", "v1", "limitranges", stem="limit_range")
SERVICE = Kind("Service", "v1", "services", stem="service")
NODE = Kind("Node", "v1", "nodes", stem="node", namespaced=False)
DEPLOYMENT = Kind("Deployment", "apps/v1", "deployments", api="AppsV1Api", stem="deployment")
HPA = Kind(
    "HorizontalPodAutoscaler",
    "autoscaling/v2",
    "horizontalpodautoscalers",
    api="AutoscalingV2Api",
    stem="horizontal_pod_autoscaler",
)
INGRESS = Kind("Ingress", "networking.k8s.io/v1", "ingresses", api="NetworkingV1Api", stem="ingress")
CRD = Kind(
    "CustomResourceDefinition",
    "apiextensions.k8s.io/v1",
    "customresourcedefinitions",
    api="ApiextensionsV1Api",
    stem="custom_resource_definition",
    namespaced=False,
)
RAY_SERVICE = Kind("RayService", "ray.io/v1", "rayservices", api="")
KINDS = {k.kind: k for k in (NAMESPACE, RESOURCE_QUOTA, LIMIT_RANGE, SERVICE, NODE, DEPLOYMENT, HPA, INGRESS, CRD)}
KINDS[RAY_SERVICE.kind] = RAY_SERVICE


def kind_of(obj: dict[str, Any]) -> Kind:
    return KINDS[obj["kind"]]


def _status_message(exc: ApiException) -> str:
    """The API server's own explanation: the `message` of the Status body, else whatever it said."""
    if exc.body:
        try:
            body = json.loads(exc.body)
        except ValueError:
            return str(exc.body)[:2000]
        if isinstance(body, dict) and body.get("message"):
            return str(body["message"])
    return str(exc.reason or "no reason given")


def _status_reason(exc: ApiException) -> str:
    try:
        body = json.loads(exc.body or "{}")
    except ValueError:
        return ""
    return str(body.get("reason") or "") if isinstance(body, dict) else ""


def _retry_after(exc: ApiException) -> float | None:
    value = (exc.headers or {}).get("Retry-After") if exc.headers is not None else None
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def configuration_for(cluster: Cluster) -> client.Configuration:
    """The client configuration of a cluster: in-cluster service account, or a kubeconfig named by a variable."""
    cfg = client.Configuration()
    try:
        if cluster.kube_auth == "in_cluster":
            config.load_incluster_config(client_configuration=cfg)
        elif cluster.kube_auth == "kubeconfig":
            path = os.environ.get(cluster.kubeconfig_env or "", "")
            if not path:
                raise Unreachable(
                    f"The environment variable {cluster.kubeconfig_env or '(none named)'} that should hold the "
                    f"kubeconfig path of cluster {cluster.name} is not set in this worker."
                )
            config.load_kube_config(
                config_file=path,
                context=cluster.kube_context or None,
                client_configuration=cfg,
                persist_config=False,
            )
        else:
            raise Unreachable(f"Cluster {cluster.name} has no Kubernetes authentication set.")
    except (ConfigException, OSError, ValueError) as exc:
        raise Unreachable(f"Cannot load the Kubernetes configuration of {cluster.name}: {exc}") from exc
    # Retries are ours (below), so that every failure is sorted and counted in one place.
    cfg.retries = False
    return cfg


class KubeApi:
    """Calls to one cluster's API server. Use as a context manager, or call `close()`."""

    def __init__(
        self,
        cfg: client.Configuration,
        *,
        timeout: float | None = None,
        retries: int | None = None,
        backoff: float | None = None,
    ):
        self.host = cfg.host
        self.api_client = client.ApiClient(configuration=cfg)
        self.timeout = float(timeout if timeout is not None else settings.PARETO_KUBE_HTTP_TIMEOUT)
        self.retries = max(1, retries if retries is not None else settings.PARETO_KUBE_RETRIES)
        self.backoff = backoff if backoff is not None else settings.PARETO_KUBE_RETRY_BACKOFF_SECONDS
        self._apis: dict[str, Any] = {}

    @classmethod
    def for_cluster(cls, cluster: Cluster, **kwargs: Any) -> KubeApi:
        return cls(configuration_for(cluster), **kwargs)

    def __enter__(self) -> KubeApi:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.api_client.close()

    # -- plumbing ------------------------------------------------------------------------------------------------
    def _api(self, name: str) -> Any:
        if name not in self._apis:
            self._apis[name] = getattr(client, name)(self.api_client)
        return self._apis[name]

    def _error(self, exc: ApiException, what: str) -> Exception:
        message = f"{what}: {_status_message(exc)}"
        status = exc.status or 0
        if status == 404:
            return NotFound(message)
        if status == 409:
            return Conflict(message, _status_reason(exc) or "Conflict")
        if status == 410:
            return Gone(message)
        if status == 429 or status >= 500:
            return TransientRuntimeError(f"{message} (HTTP {status})")
        if status == 403:
            return Forbidden(f"{message} (HTTP 403)")
        if status == 401:
            return Unreachable(f"The API server at {self.host} refused Pareto's credentials. {message}")
        if status == 0:  # the client's own failure, e.g. a TLS certificate it does not trust
            return Unreachable(f"Cannot talk to the API server at {self.host}. {message}")
        return PermanentRuntimeError(f"{message} (HTTP {status})")

    def _call(self, what: str, method: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """One API call, tried again on transient failures; returns the raw urllib3 response."""
        attempt = 0
        while True:
            attempt += 1
            wait: float | None = None
            try:
                return method(*args, _preload_content=False, _request_timeout=self.timeout, **kwargs)
            except ApiException as exc:
                error = self._error(exc, what)
                wait = _retry_after(exc)
            except urllib3.exceptions.SSLError as exc:
                raise Unreachable(f"{what}: TLS with {self.host} failed: {exc}") from exc
            except urllib3.exceptions.HTTPError as exc:  # timeouts, refused and dropped connections
                error = TransientRuntimeError(f"{what}: the API server at {self.host} did not answer: {exc}")
            except ModelValidationError as exc:
                raise PermanentRuntimeError(f"{what}: the object does not fit the Kubernetes schema: {exc}") from exc
            if not isinstance(error, TransientRuntimeError) or isinstance(error, Gone) or attempt >= self.retries:
                raise error
            pause = self.backoff * (2 ** (attempt - 1))
            time.sleep(min(wait if wait is not None else pause, 30.0))

    @staticmethod
    def _json(response: Any) -> dict[str, Any]:
        try:
            data = response.data
        finally:
            response.release_conn()
        if not data:
            return {}
        body = json.loads(data)
        return body if isinstance(body, dict) else {}

    def _method(self, kind: Kind, verb: str) -> Callable[..., Any]:
        if kind.custom:
            scope = "namespaced" if kind.namespaced else "cluster"
            name = f"{'get' if verb == 'read' else verb}_{scope}_custom_object"
            return getattr(self._api("CustomObjectsApi"), name)  # type: ignore[no-any-return]
        scope = "namespaced_" if kind.namespaced else ""
        return getattr(self._api(kind.api), f"{verb}_{scope}{kind.stem}")  # type: ignore[no-any-return]

    def _where(self, kind: Kind, namespace: str | None) -> tuple[Any, ...]:
        """Leading positional arguments of a call: (group, version, [namespace,] plural) for custom resources."""
        if kind.custom:
            return (kind.group, kind.version, *((namespace,) if kind.namespaced else ()), kind.plural)
        return ()

    @staticmethod
    def _describe(kind: Kind, name: str, namespace: str | None) -> str:
        return f"{kind.kind} {namespace}/{name}" if namespace else f"{kind.kind} {name}"

    # -- verbs ---------------------------------------------------------------------------------------------------
    def get(self, kind: Kind, name: str, namespace: str | None = None) -> dict[str, Any] | None:
        what = f"Reading {self._describe(kind, name, namespace)}"
        try:
            if kind.custom:
                response = self._call(what, self._method(kind, "read"), *self._where(kind, namespace), name)
            elif kind.namespaced:
                response = self._call(what, self._method(kind, "read"), name, namespace)
            else:
                response = self._call(what, self._method(kind, "read"), name)
        except NotFound:
            return None
        return self._json(response)

    def list(
        self, kind: Kind, *, label_selector: str = "", namespace: str | None = None
    ) -> tuple[list[dict[str, Any]], str]:
        """Items and the list's resourceVersion (where a watch of the same selection starts)."""
        what = f"Listing {kind}"
        method, args = self._list_method(kind, namespace)
        body = self._json(self._call(what, method, *args, label_selector=label_selector or None))
        items = [dict(item) for item in body.get("items") or []]
        for item in items:  # items of typed lists come without kind and apiVersion
            item.setdefault("kind", kind.kind)
            item.setdefault("apiVersion", kind.api_version)
        return items, str((body.get("metadata") or {}).get("resourceVersion") or "")

    def _list_method(self, kind: Kind, namespace: str | None) -> tuple[Callable[..., Any], tuple[Any, ...]]:
        if kind.custom:
            if namespace:
                return self._api("CustomObjectsApi").list_namespaced_custom_object, self._where(kind, namespace)
            return self._api("CustomObjectsApi").list_cluster_custom_object, (kind.group, kind.version, kind.plural)
        api = self._api(kind.api)
        if not kind.namespaced:
            return getattr(api, f"list_{kind.stem}"), ()
        if namespace:
            return getattr(api, f"list_namespaced_{kind.stem}"), (namespace,)
        return getattr(api, f"list_{kind.stem}_for_all_namespaces"), ()

    def create(self, body: dict[str, Any]) -> dict[str, Any]:
        kind = kind_of(body)
        meta = body["metadata"]
        what = f"Creating {self._describe(kind, meta['name'], meta.get('namespace'))}"
        if kind.custom:
            return self._json(
                self._call(what, self._method(kind, "create"), *self._where(kind, meta["namespace"]), body)
            )
        if kind.namespaced:
            return self._json(self._call(what, self._method(kind, "create"), meta["namespace"], body))
        return self._json(self._call(what, self._method(kind, "create"), body))

    def replace(self, body: dict[str, Any]) -> dict[str, Any]:
        """PUT the whole object; `metadata.resourceVersion` makes it conditional (409 Conflict when stale)."""
        kind = kind_of(body)
        meta = body["metadata"]
        name, namespace = meta["name"], meta.get("namespace")
        what = f"Updating {self._describe(kind, name, namespace)}"
        method = self._method(kind, "replace")
        if kind.custom:
            return self._json(self._call(what, method, *self._where(kind, namespace), name, body))
        if kind.namespaced:
            return self._json(self._call(what, method, name, namespace, body))
        return self._json(self._call(what, method, name, body))

    def delete(self, kind: Kind, name: str, namespace: str | None = None) -> bool:
        """Delete in the foreground: the object stays (with a deletionTimestamp) until what it owns is gone, so
        "gone" means its Pods and their GPUs are released. False if it was not there."""
        what = f"Deleting {self._describe(kind, name, namespace)}"
        method = self._method(kind, "delete")
        options = {"propagation_policy": "Foreground"}
        try:
            if kind.custom:
                response = self._call(what, method, *self._where(kind, namespace), name, **options)
            elif kind.namespaced:
                response = self._call(what, method, name, namespace, **options)
            else:
                response = self._call(what, method, name, **options)
        except NotFound:
            return False
        self._json(response)
        return True

    def watch(
        self, kind: Kind, *, label_selector: str, resource_version: str, timeout_seconds: int
    ) -> Iterator[tuple[str, dict[str, Any]]]:
        """(event type, object) from `resource_version` on, until the server closes the watch at the timeout.

        Raises `Gone` when the server no longer has that version (410, sent as an ERROR event)."""
        method, args = self._list_method(kind, None)
        watcher = watch.Watch()
        what = f"Watching {kind}"
        # The server ends the watch itself after timeout_seconds; the read timeout only catches a dead connection.
        request_timeout = (self.timeout, float(timeout_seconds) + self.timeout)
        try:
            for event in watcher.stream(
                method,
                *args,
                label_selector=label_selector or None,
                resource_version=resource_version or None,
                timeout_seconds=timeout_seconds,
                allow_watch_bookmarks=True,
                _request_timeout=request_timeout,
            ):
                obj = event.get("raw_object") or event.get("object") or {}
                yield str(event.get("type")), dict(obj)
        except ApiException as exc:
            raise self._error(exc, what) from exc
        except urllib3.exceptions.HTTPError as exc:
            raise TransientRuntimeError(f"{what}: the connection to {self.host} broke: {exc}") from exc
        finally:
            watcher.stop()

    def server_version(self) -> str:
        body = self._json(self._call("Reading the API server version", self._api("VersionApi").get_code))
        return str(body.get("gitVersion") or f"{body.get('major', '?')}.{body.get('minor', '?')}")
