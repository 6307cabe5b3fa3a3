"""An in-process HTTP server that answers like a Kubernetes API server, for every request Pareto's code makes.

No kube-apiserver can run on the test machines, so the real `kubernetes` client talks to this one over HTTP
through an ordinary kubeconfig (bearer token). It keeps the semantics the client and Pareto can tell apart:
- one resourceVersion sequence for every write; lists carry `metadata.resourceVersion`;
- create answers 201 with uid, creationTimestamp, generation and resourceVersion, 409 AlreadyExists when taken,
  404 when the namespace is missing, 403 when it is terminating;
- replace (PUT) answers 409 Conflict on a stale resourceVersion; custom resources must send one (422 if not);
  a main-resource write keeps `status`, a `/status` write changes nothing else (status subresource);
  `metadata.generation` moves only when the spec does; a write that changes nothing stores nothing;
- PATCH as merge patch for everything, strategic merge for built-in kinds only (415 for custom resources);
- delete answers a Status (200), or, with finalizers or propagationPolicy=Foreground, the object with a
  deletionTimestamp; it goes once its finalizers are removed (`finish_deletion`, what the garbage collector does);
- errors are `Status` bodies with reason, message and code;
- watch=true streams chunked JSON lines: ADDED for what exists when no resourceVersion is given, the events after
  a given resourceVersion otherwise, an ERROR event with code 410 (Expired) for a version older than the last
  compaction (`compact()`), and the stream ends at timeoutSeconds;
- every object written by a client is checked against the schema files in tests/kube/schemas/ (422 Invalid).
  A real server would drop unknown fields; this one refuses them, so a typo in a manifest fails a test.
Tests inject faults (`fail`), look at what was asked (`requests`), and change objects behind Pareto's back
(`edit`, `remove`) the way a person with kubectl would.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import re
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import yaml

from .schemas import validate

TOKEN = "pareto-test-token"


@dataclass(frozen=True)
class Resource:
    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool = True
    custom: bool = False

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def qualified(self) -> str:
        """How the API server names the resource in messages: `rayservices.ray.io`, `deployments.apps`, `services`."""
        return f"{self.plural}.{self.group}" if self.group else self.plural


RESOURCES = (
    Resource("", "v1", "namespaces", "Namespace", namespaced=False),
    Resource("", "v1", "resourcequotas", "ResourceQuota"),
    Resource("", "v1", "limitranges", "LimitRange"),
    Resource("", "v1", "services", "Service"),
    Resource("", "v1", "nodes", "Node", namespaced=False),
    Resource("apps", "v1", "deployments", "Deployment"),
    Resource("autoscaling", "v2", "horizontalpodautoscalers", "HorizontalPodAutoscaler"),
    Resource("networking.k8s.io", "v1", "ingresses", "Ingress"),
    Resource("apiextensions.k8s.io", "v1", "customresourcedefinitions", "CustomResourceDefinition", namespaced=False),
    Resource("ray.io", "v1", "rayservices", "RayService", custom=True),
)
BY_KIND = {r.kind: r for r in RESOURCES}
# Kinds whose writes are checked against tests/kube/schemas (the ones Pareto writes).
VALIDATED = {
    "Namespace",
    "ResourceQuota",
    "LimitRange",
    "Service",
    "Deployment",
    "HorizontalPodAutoscaler",
    "Ingress",
    "RayService",
}
REASONS = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    409: "Conflict",
    410: "Expired",
    415: "UnsupportedMediaType",
    422: "Invalid",
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
    504: "Timeout",
}


def now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def status_body(code: int, message: str, reason: str | None = None, details: dict[str, Any] | None = None) -> dict:
    body = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason or REASONS.get(code, "Unknown"),
        "code": code,
    }
    if details is not None:
        body["details"] = details
    return body


class ApiError(Exception):
    def __init__(self, code: int, message: str, reason: str | None = None, details: dict[str, Any] | None = None):
        super().__init__(message)
        self.code, self.message, self.reason, self.details = code, message, reason, details


# --- label selectors ---------------------------------------------------------------------------------------------
_SET = re.compile(r"^\s*([^\s!=]+)\s+(in|notin)\s+\(([^)]*)\)\s*$")


def _requirements(selector: str) -> list[str]:
    parts, depth, current = [], 0, ""
    for char in selector:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    if current.strip():
        parts.append(current)
    return [p.strip() for p in parts if p.strip()]


def selector_matches(selector: str, labels: dict[str, str]) -> bool:
    for requirement in _requirements(selector or ""):
        match = _SET.match(requirement)
        if match:
            key, op, values = match.group(1), match.group(2), {v.strip() for v in match.group(3).split(",")}
            if (op == "in") != (labels.get(key) in values):
                return False
        elif "!=" in requirement:
            key, value = (s.strip() for s in requirement.split("!=", 1))
            if labels.get(key) == value:
                return False
        elif "=" in requirement:
            key, value = (s.strip() for s in requirement.replace("==", "=").split("=", 1))
            if labels.get(key) != value:
                return False
        elif requirement.startswith("!"):
            if requirement[1:].strip() in labels:
                return False
        elif requirement not in labels:
            return False
    return True


# --- patches -----------------------------------------------------------------------------------------------------
def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def strategic_merge_patch(target: Any, patch: Any) -> Any:
    """Strategic merge as far as Pareto's kinds need it: maps merge, lists of named items merge by name."""
    if isinstance(patch, dict) and isinstance(target, dict):
        result = copy.deepcopy(target)
        for key, value in patch.items():
            if value is None:
                result.pop(key, None)
            else:
                result[key] = strategic_merge_patch(result.get(key), value)
        return result
    if isinstance(patch, list) and isinstance(target, list) and all(isinstance(i, dict) and "name" in i for i in patch):
        merged = [copy.deepcopy(i) for i in target]
        for item in patch:
            for index, existing in enumerate(merged):
                if isinstance(existing, dict) and existing.get("name") == item["name"]:
                    merged[index] = strategic_merge_patch(existing, item)
                    break
            else:
                merged.append(copy.deepcopy(item))
        return merged
    return copy.deepcopy(patch)


def json_patch(target: Any, operations: list[dict[str, Any]]) -> Any:
    """RFC 6902: add, replace, remove, test."""
    doc = copy.deepcopy(target)
    for op in operations:
        parts = [p.replace("~1", "/").replace("~0", "~") for p in op["path"].split("/")[1:]]
        parent = doc
        for part in parts[:-1]:
            parent = parent[int(part)] if isinstance(parent, list) else parent[part]
        last = parts[-1]
        if op["op"] == "test":
            current = parent[int(last)] if isinstance(parent, list) else parent.get(last)
            if current != op["value"]:
                raise ApiError(422, f"the test operation on {op['path']} failed")
        elif op["op"] in ("add", "replace"):
            if isinstance(parent, list):
                index = len(parent) if last == "-" else int(last)
                if op["op"] == "add":
                    parent.insert(index, op["value"])
                else:
                    parent[index] = op["value"]
            else:
                parent[last] = op["value"]
        elif op["op"] == "remove":
            if isinstance(parent, list):
                parent.pop(int(last))
            else:
                parent.pop(last)
        else:
            raise ApiError(422, f"unsupported JSON patch operation {op['op']}")
    return doc


# --- the store -----------------------------------------------------------------------------------------------------
@dataclass
class Event:
    rv: int
    resource: Resource
    type: str  # ADDED, MODIFIED, DELETED
    obj: dict[str, Any]
    old: dict[str, Any] | None


@dataclass
class Fault:
    method: str
    path: str  # a substring of the path
    status: int = 503
    times: int = 1
    retry_after: int | None = None
    delay: float = 0.0  # sleep first (longer than the client's timeout: a timeout)
    drop: bool = False  # close the connection without an answer
    message: str = ""
    before: Callable[[], None] | None = None  # run, then answer normally (status 0): someone else's write


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    content_type: str
    body: Any = None


@dataclass
class FakeApiServer:
    kuberay: bool = True  # whether KubeRay's CRD is installed (the ray.io group is served)
    version: str = "v1.31.4"
    objects: dict[tuple[str, str, str], dict[str, Any]] = field(default_factory=dict)
    events: list[Event] = field(default_factory=list)
    requests: list[Request] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)
    rv: int = 1000
    compacted_rv: int = 0

    def __post_init__(self) -> None:
        self.lock = threading.Condition(threading.RLock())
        self.httpd: ThreadingHTTPServer | None = None
        self.thread: threading.Thread | None = None
        self.stopping = False
        if self.kuberay:
            self.install_kuberay()

    # -- lifecycle ---------------------------------------------------------------------------------------------
    def start(self) -> FakeApiServer:
        server = self

        class Handler(_Handler):
            api = server

        self.httpd = _Server(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="fake-apiserver", daemon=True)
        self.thread.start()
        return self

    def stop(self) -> None:
        with self.lock:
            self.stopping = True
            self.lock.notify_all()
        if self.httpd is not None:
            self.httpd.shutdown()
            self.httpd.server_close()

    @property
    def url(self) -> str:
        assert self.httpd is not None
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}"

    def write_kubeconfig(self, path: Path, *, token: str = TOKEN, context: str = "fake") -> Path:
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "fake", "cluster": {"server": self.url}}],
            "users": [{"name": "pareto", "user": {"token": token}}],
            "contexts": [{"name": context, "context": {"cluster": "fake", "user": "pareto"}}],
            "current-context": context,
        }
        path.write_text(yaml.safe_dump(config))
        return path

    # -- what tests use --------------------------------------------------------------------------------------------
    def fail(self, method: str, path: str, status: int = 503, **kwargs: Any) -> Fault:
        fault = Fault(method=method.upper(), path=path, status=status, **kwargs)
        with self.lock:
            self.faults.append(fault)
        return fault

    def get(self, kind: str, name: str, namespace: str = "") -> dict[str, Any] | None:
        with self.lock:
            obj = self.objects.get((kind, namespace, name))
            return copy.deepcopy(obj) if obj is not None else None

    def list(self, kind: str, namespace: str | None = None) -> list[dict[str, Any]]:
        with self.lock:
            return [
                copy.deepcopy(o)
                for (k, ns, _), o in sorted(self.objects.items())
                if k == kind and (namespace is None or ns == namespace)
            ]

    def put(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Store an object as a cluster would have it (nodes, the CRD), with the server's metadata."""
        with self.lock:
            obj = copy.deepcopy(obj)
            resource = BY_KIND[obj["kind"]]
            meta = obj.setdefault("metadata", {})
            meta.setdefault("uid", str(uuid.uuid4()))
            meta.setdefault("creationTimestamp", now())
            meta.setdefault("generation", 1)
            key = (obj["kind"], meta.get("namespace", ""), meta["name"])
            old = self.objects.get(key)
            self._commit(resource, key, obj, "MODIFIED" if old else "ADDED", old)
            return copy.deepcopy(obj)

    def edit(self, kind: str, name: str, namespace: str, change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
        """Someone with kubectl edits the object: the spec changes, so does its generation."""
        with self.lock:
            key = (kind, namespace, name)
            old = self.objects[key]
            new = copy.deepcopy(old)
            change(new)
            if _without_meta(new) != _without_meta(old) and "spec" in new:
                new["metadata"]["generation"] = int(old["metadata"].get("generation", 1)) + 1
            self._commit(BY_KIND[kind], key, new, "MODIFIED", old)
            return copy.deepcopy(new)

    def remove(self, kind: str, name: str, namespace: str = "") -> None:
        """The object vanishes at once (kubectl delete of an object nobody holds a finalizer on)."""
        with self.lock:
            key = (kind, namespace, name)
            old = self.objects[key]
            self._delete_now(BY_KIND[kind], key, old)

    def set_status(self, kind: str, name: str, namespace: str, status: dict[str, Any]) -> dict[str, Any] | None:
        """What a controller's write to the status subresource does."""
        with self.lock:
            key = (kind, namespace, name)
            old = self.objects.get(key)
            if old is None:
                return None
            new = copy.deepcopy(old)
            new["status"] = copy.deepcopy(status)
            if new == old:
                return copy.deepcopy(old)
            self._commit(BY_KIND[kind], key, new, "MODIFIED", old)
            return copy.deepcopy(new)

    def finish_deletion(self, kind: str, name: str, namespace: str, finalizer: str) -> None:
        """A controller removes its finalizer; the object goes when none is left."""
        with self.lock:
            key = (kind, namespace, name)
            old = self.objects.get(key)
            if old is None:
                return
            new = copy.deepcopy(old)
            new["metadata"]["finalizers"] = [f for f in new["metadata"].get("finalizers", []) if f != finalizer]
            if not new["metadata"]["finalizers"] and new["metadata"].get("deletionTimestamp"):
                self._delete_now(BY_KIND[kind], key, old)
            else:
                self._commit(BY_KIND[kind], key, new, "MODIFIED", old)

    def compact(self) -> int:
        """Forget every resourceVersion so far, as etcd compaction does: older watches get 410 Gone."""
        with self.lock:
            self.compacted_rv = self.rv
            self.events = []
            return self.rv

    def install_kuberay(self) -> None:
        self.kuberay = True
        self.put(
            {
                "apiVersion": "apiextensions.k8s.io/v1",
                "kind": "CustomResourceDefinition",
                "metadata": {"name": "rayservices.ray.io"},
                "spec": {
                    "group": "ray.io",
                    "names": {"kind": "RayService", "plural": "rayservices"},
                    "scope": "Namespaced",
                },
            }
        )

    def add_node(self, name: str, labels: dict[str, str], gpus: int = 0, cpus: int = 96) -> dict[str, Any]:
        allocatable = {"cpu": str(cpus), "memory": "1800Gi", "pods": "110"}
        if gpus:
            allocatable["nvidia.com/gpu"] = str(gpus)
        return self.put(
            {
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, **labels}},
                "status": {"allocatable": allocatable, "capacity": dict(allocatable)},
            }
        )

    def asked(self, method: str | None = None, path: str = "") -> list[Request]:
        with self.lock:
            return [r for r in self.requests if (method is None or r.method == method) and path in r.path]

    # -- store internals ---------------------------------------------------------------------------------------------
    def _next_rv(self) -> str:
        self.rv += 1
        return str(self.rv)

    def _commit(
        self, resource: Resource, key: tuple[str, str, str], obj: dict[str, Any], kind: str, old: dict[str, Any] | None
    ) -> None:
        obj["metadata"]["resourceVersion"] = self._next_rv()
        self.objects[key] = obj
        self.events.append(Event(self.rv, resource, kind, copy.deepcopy(obj), copy.deepcopy(old)))
        self.lock.notify_all()

    def _delete_now(self, resource: Resource, key: tuple[str, str, str], old: dict[str, Any]) -> dict[str, Any]:
        del self.objects[key]
        gone = copy.deepcopy(old)
        gone["metadata"]["resourceVersion"] = self._next_rv()
        self.events.append(Event(self.rv, resource, "DELETED", copy.deepcopy(gone), copy.deepcopy(old)))
        self.lock.notify_all()
        return gone

    def served(self, resource: Resource) -> bool:
        return self.kuberay or resource.group != "ray.io"


def _without_meta(obj: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in obj.items() if k not in ("metadata", "status")}


def _server_defaults(obj: dict[str, Any]) -> None:
    """A few of the defaults a real API server fills in, so that Pareto's comparisons must tolerate them."""
    kind, spec = obj["kind"], obj.setdefault("spec", {}) if obj["kind"] != "Node" else {}
    if kind == "Namespace":
        obj["metadata"].setdefault("labels", {})["kubernetes.io/metadata.name"] = obj["metadata"]["name"]
        spec.setdefault("finalizers", ["kubernetes"])
        obj.setdefault("status", {"phase": "Active"})
    elif kind == "Service":
        spec.setdefault("clusterIP", f"10.0.{len(obj['metadata']['name']) % 250}.{int(time.time() * 1000) % 250}")
        spec.setdefault("clusterIPs", [spec["clusterIP"]])
        spec.setdefault("ipFamilies", ["IPv4"])
        spec.setdefault("ipFamilyPolicy", "SingleStack")
        spec.setdefault("sessionAffinity", "None")
        spec.setdefault("type", "ClusterIP")
        for port in spec.get("ports", []):
            port.setdefault("protocol", "TCP")
            port.setdefault("targetPort", port.get("port"))
    elif kind == "Deployment":
        spec.setdefault("revisionHistoryLimit", 10)
        spec.setdefault("progressDeadlineSeconds", 600)
        spec.setdefault("replicas", 1)
        pod = spec.get("template", {}).get("spec", {})
        pod.setdefault("restartPolicy", "Always")
        pod.setdefault("dnsPolicy", "ClusterFirst")
        for container in pod.get("containers", []):
            container.setdefault("imagePullPolicy", "IfNotPresent")
            container.setdefault("terminationMessagePath", "/dev/termination-log")
    elif kind == "Ingress":
        obj.setdefault("status", {"loadBalancer": {}})


# --- HTTP ------------------------------------------------------------------------------------------------------------
class _Server(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that gave up (its timeout, a dropped connection) is part of the tests; anything else is not."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    api: FakeApiServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # quiet tests
        return

    # -- answering -------------------------------------------------------------------------------------------------
    def _send(self, code: int, body: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def _error(self, error: ApiError, headers: dict[str, str] | None = None) -> None:
        self._send(error.code, status_body(error.code, error.message, error.reason, error.details), headers)

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_PUT(self) -> None:
        self._handle("PUT")

    def do_PATCH(self) -> None:
        self._handle("PATCH")

    def do_DELETE(self) -> None:
        self._handle("DELETE")

    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _handle(self, method: str) -> None:
        raw = self._read_body()
        parts = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        content_type = (self.headers.get("Content-Type") or "").split(";")[0].strip()
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode(errors="replace")
        api = self.api
        with api.lock:
            api.requests.append(Request(method, parts.path, query, content_type, body))
            fault = next((f for f in api.faults if f.method == method and f.path in parts.path and f.times > 0), None)
            if fault is not None:
                fault.times -= 1
        if fault is not None:
            if fault.before is not None:
                fault.before()
            if fault.delay:
                time.sleep(fault.delay)
            if fault.drop:
                self.close_connection = True
                self.connection.shutdown(2)
                return
            if fault.status:
                headers = {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else None
                message = fault.message or f"injected {fault.status}"
                self._error(ApiError(fault.status, message), headers)
                return
        if self.headers.get("Authorization") != f"Bearer {TOKEN}":
            self._error(ApiError(401, "Unauthorized"))
            return
        try:
            self._route(method, parts.path, query, content_type, body)
        except ApiError as error:
            self._error(error)

    def _route(self, method: str, path: str, query: dict[str, str], content_type: str, body: Any) -> None:
        if path == "/version" or path == "/version/":
            major, minor = self.api.version.lstrip("v").split(".")[:2]
            self._send(200, {"major": major, "minor": minor, "gitVersion": self.api.version, "platform": "linux/amd64"})
            return
        segments = [s for s in path.split("/") if s]
        if segments[:2] == ["api", "v1"]:
            group, version, rest = "", "v1", segments[2:]
        elif segments[:1] == ["apis"] and len(segments) >= 3:
            group, version, rest = segments[1], segments[2], segments[3:]
        else:
            raise ApiError(404, "the server could not find the requested resource", details={})
        plurals = {r.plural: r for r in RESOURCES if r.group == group and r.version == version}
        namespace, name, sub = "", "", ""
        if len(rest) >= 3 and rest[0] == "namespaces" and rest[2] in plurals:
            namespace, resource_name, rest = rest[1], rest[2], rest[3:]
        elif rest:
            resource_name, rest = rest[0], rest[1:]
        else:
            raise ApiError(404, "the server could not find the requested resource", details={})
        resource = plurals.get(resource_name)
        if resource is None or not self.api.served(resource):
            raise ApiError(404, "the server could not find the requested resource", details={})
        if rest:
            name = rest[0]
        if len(rest) > 1:
            sub = rest[1]
        if sub and sub != "status":
            raise ApiError(404, "the server could not find the requested resource", details={})
        if not name:
            if method == "GET" and query.get("watch") in ("true", "1"):
                self._watch(resource, namespace, query)
            elif method == "GET":
                self._send(200, self._list(resource, namespace, query))
            elif method == "POST":
                self._send(201, self._create(resource, namespace, body, content_type))
            else:
                raise ApiError(405, "the server does not allow this method on the requested resource")
            return
        if method == "GET":
            self._send(200, self._read(resource, namespace, name))
        elif method == "PUT":
            self._send(200, self._replace(resource, namespace, name, body, status_only=sub == "status"))
        elif method == "PATCH":
            self._send(200, self._patch(resource, namespace, name, body, content_type, status_only=sub == "status"))
        elif method == "DELETE":
            code, answer = self._delete(resource, namespace, name, body, query)
            self._send(code, answer)
        else:
            raise ApiError(405, "the server does not allow this method on the requested resource")

    # -- verbs --------------------------------------------------------------------------------------------------------
    def _not_found(self, resource: Resource, name: str) -> ApiError:
        return ApiError(
            404,
            f'{resource.qualified} "{name}" not found',
            details={"name": name, "group": resource.group, "kind": resource.plural},
        )

    def _read(self, resource: Resource, namespace: str, name: str) -> dict[str, Any]:
        obj = self.api.get(resource.kind, name, namespace)
        if obj is None:
            raise self._not_found(resource, name)
        return obj

    def _list(self, resource: Resource, namespace: str, query: dict[str, str]) -> dict[str, Any]:
        selector = query.get("labelSelector", "")
        with self.api.lock:
            items = [
                o
                for o in self.api.list(resource.kind, namespace or None)
                if selector_matches(selector, o["metadata"].get("labels") or {})
            ]
            version = str(self.api.rv)
        if not resource.custom:  # items of typed lists carry no kind and apiVersion
            for item in items:
                item.pop("kind", None)
                item.pop("apiVersion", None)
        return {
            "kind": f"{resource.kind}List",
            "apiVersion": resource.api_version,
            "metadata": {"resourceVersion": version},
            "items": items,
        }

    def _check_body(self, resource: Resource, body: Any, content_type: str) -> dict[str, Any]:
        if content_type not in ("", "application/json"):
            raise ApiError(
                415,
                "the body of the request was in an unknown format - accepted media types "
                "include: application/json, application/yaml",
            )
        if not isinstance(body, dict):
            raise ApiError(400, "the body of the request could not be decoded as a JSON object")
        if body.get("apiVersion") != resource.api_version or body.get("kind") != resource.kind:
            raise ApiError(
                400,
                f"the API version in the data ({body.get('apiVersion')}) does not match the expected API version "
                f"({resource.api_version}) or the kind ({body.get('kind')}) is not {resource.kind}",
            )
        return copy.deepcopy(body)

    def _validate(self, resource: Resource, obj: dict[str, Any]) -> None:
        if resource.kind not in VALIDATED:
            return
        problems = validate({k: v for k, v in obj.items() if k != "status"})
        if problems:
            name = (obj.get("metadata") or {}).get("name", "")
            causes = [{"reason": "FieldValueInvalid", "message": p} for p in problems]
            raise ApiError(
                422,
                f'{resource.kind}.{resource.group or "core"} "{name}" is invalid: ' + "; ".join(problems),
                details={"name": name, "group": resource.group, "kind": resource.kind, "causes": causes},
            )

    def _create(self, resource: Resource, namespace: str, body: Any, content_type: str) -> dict[str, Any]:
        obj = self._check_body(resource, body, content_type)
        meta = obj.setdefault("metadata", {})
        name = meta.get("name")
        if not name:
            raise ApiError(
                422, f"{resource.kind} is invalid: metadata.name: Required value: name or generateName is required"
            )
        if resource.namespaced:
            if meta.get("namespace") and meta["namespace"] != namespace:
                raise ApiError(
                    400, "the namespace of the provided object does not match the namespace sent on the request"
                )
            meta["namespace"] = namespace
        else:
            meta.pop("namespace", None)
        for server_field in ("uid", "resourceVersion", "creationTimestamp", "deletionTimestamp", "generation"):
            meta.pop(server_field, None)
        obj.pop("status", None)
        self._validate(resource, obj)
        api = self.api
        with api.lock:
            if resource.namespaced:
                ns = api.objects.get(("Namespace", "", namespace))
                if ns is None:
                    raise ApiError(
                        404, f'namespaces "{namespace}" not found', details={"name": namespace, "kind": "namespaces"}
                    )
                if ns["metadata"].get("deletionTimestamp"):
                    raise ApiError(
                        403,
                        f'{resource.plural} "{name}" is forbidden: unable to create new content in '
                        f"namespace {namespace} because it is being terminated",
                    )
            key = (resource.kind, namespace, name)
            if key in api.objects:
                raise ApiError(
                    409,
                    f'{resource.qualified} "{name}" already exists',
                    "AlreadyExists",
                    details={"name": name, "group": resource.group, "kind": resource.plural},
                )
            meta.update(uid=str(uuid.uuid4()), creationTimestamp=now(), generation=1)
            _server_defaults(obj)
            api._commit(resource, key, obj, "ADDED", None)
            return copy.deepcopy(obj)

    def _stale(self, resource: Resource, name: str) -> ApiError:
        return ApiError(
            409,
            f'Operation cannot be fulfilled on {resource.qualified} "{name}": the object has been modified; '
            "please apply your changes to the latest version and try again",
            "Conflict",
            details={"name": name, "group": resource.group, "kind": resource.plural},
        )

    def _store_update(
        self, resource: Resource, namespace: str, name: str, new: dict[str, Any], *, status_only: bool, require_rv: bool
    ) -> dict[str, Any]:
        api = self.api
        with api.lock:
            key = (resource.kind, namespace, name)
            old = api.objects.get(key)
            if old is None:
                raise self._not_found(resource, name)
            meta = new.setdefault("metadata", {})
            if meta.get("name", name) != name:
                raise ApiError(400, "the name of the object does not match the name on the URL")
            given = meta.get("resourceVersion")
            if not given and require_rv:
                raise ApiError(
                    422,
                    f'{resource.kind}.{resource.group} "{name}" is invalid: metadata.resourceVersion: '
                    "Invalid value: 0x0: must be specified for an update",
                )
            if given and given != old["metadata"]["resourceVersion"]:
                raise self._stale(resource, name)
            if status_only:
                result = copy.deepcopy(old)
                result["status"] = copy.deepcopy(new.get("status") or {})
            else:
                result = copy.deepcopy(new)
                result["status"] = copy.deepcopy(old.get("status")) if "status" in old else None
                if result["status"] is None:
                    result.pop("status")
                result_meta = result["metadata"]
                result_meta["name"] = name
                if resource.namespaced:
                    result_meta["namespace"] = namespace
                for server_field in ("uid", "creationTimestamp", "deletionTimestamp", "generation"):
                    if server_field in old["metadata"]:
                        result_meta[server_field] = old["metadata"][server_field]
                    else:
                        result_meta.pop(server_field, None)
                if resource.kind == "Service":
                    old_ip = old["spec"].get("clusterIP")
                    new_ip = result.get("spec", {}).get("clusterIP")
                    if new_ip and new_ip != old_ip:
                        raise ApiError(
                            422,
                            f'Service "{name}" is invalid: spec.clusterIP: Invalid value: "{new_ip}": '
                            "field is immutable",
                        )
                _server_defaults(result)
                self._validate(resource, result)
                if _without_meta(result) != _without_meta(old):
                    result_meta["generation"] = int(old["metadata"].get("generation", 1)) + 1
            result["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"]
            if result == old:
                return copy.deepcopy(old)  # nothing changed: nothing is written, the version stays
            if result["metadata"].get("deletionTimestamp") and not result["metadata"].get("finalizers"):
                return api._delete_now(resource, key, old)
            api._commit(resource, key, result, "MODIFIED", old)
            return copy.deepcopy(result)

    def _replace(self, resource: Resource, namespace: str, name: str, body: Any, *, status_only: bool) -> dict:
        new = self._check_body(resource, body, "")
        return self._store_update(resource, namespace, name, new, status_only=status_only, require_rv=resource.custom)

    def _patch(
        self, resource: Resource, namespace: str, name: str, body: Any, content_type: str, *, status_only: bool
    ) -> dict[str, Any]:
        old = self._read(resource, namespace, name)
        if content_type == "application/merge-patch+json":
            new = merge_patch(old, body)
        elif content_type == "application/strategic-merge-patch+json":
            if resource.custom:
                raise ApiError(
                    415,
                    "the body of the request was in an unknown format - accepted media types include: "
                    "application/json-patch+json, application/merge-patch+json, "
                    "application/apply-patch+yaml",
                )
            new = strategic_merge_patch(old, body)
        elif content_type == "application/json-patch+json":
            new = json_patch(old, body if isinstance(body, list) else [])
        else:
            raise ApiError(415, f"the body of the request was in an unknown format ({content_type})")
        if not (isinstance(body, dict) and (body.get("metadata") or {}).get("resourceVersion")):
            # A patch without a resourceVersion applies to whatever is stored now.
            new["metadata"]["resourceVersion"] = self.api.get(resource.kind, name, namespace)["metadata"][
                "resourceVersion"
            ]
        return self._store_update(resource, namespace, name, new, status_only=status_only, require_rv=False)

    def _delete(
        self, resource: Resource, namespace: str, name: str, body: Any, query: dict[str, str]
    ) -> tuple[int, dict[str, Any]]:
        options = body if isinstance(body, dict) else {}
        policy = query.get("propagationPolicy") or options.get("propagationPolicy") or "Background"
        api = self.api
        with api.lock:
            key = (resource.kind, namespace, name)
            old = api.objects.get(key)
            if old is None:
                raise self._not_found(resource, name)
            pre = options.get("preconditions") or {}
            if pre.get("uid") and pre["uid"] != old["metadata"]["uid"]:
                raise ApiError(
                    409,
                    f"Precondition failed: UID in precondition: {pre['uid']}, UID in object meta: "
                    f"{old['metadata']['uid']}",
                    "Conflict",
                )
            if pre.get("resourceVersion") and pre["resourceVersion"] != old["metadata"]["resourceVersion"]:
                raise self._stale(resource, name)
            if old["metadata"].get("deletionTimestamp"):
                return 200, copy.deepcopy(old)
            finalizers = list(old["metadata"].get("finalizers") or [])
            if policy == "Foreground" and "foregroundDeletion" not in finalizers:
                finalizers.append("foregroundDeletion")
            if finalizers:
                new = copy.deepcopy(old)
                new["metadata"]["finalizers"] = finalizers
                new["metadata"]["deletionTimestamp"] = now()
                new["metadata"]["deletionGracePeriodSeconds"] = 0
                api._commit(resource, key, new, "MODIFIED", old)
                return 200, copy.deepcopy(new)
            api._delete_now(resource, key, old)
        details = {"name": name, "group": resource.group, "kind": resource.plural, "uid": old["metadata"]["uid"]}
        return 200, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": details}

    # -- watch -----------------------------------------------------------------------------------------------------
    def _chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    def _watch(self, resource: Resource, namespace: str, query: dict[str, str]) -> None:
        api = self.api
        selector = query.get("labelSelector", "")
        timeout = float(query.get("timeoutSeconds") or 1800)
        since = query.get("resourceVersion") or ""
        deadline = time.monotonic() + timeout
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

        def wanted(obj: dict[str, Any] | None) -> bool:
            if obj is None:
                return False
            meta = obj["metadata"]
            return (not namespace or meta.get("namespace") == namespace) and selector_matches(
                selector, meta.get("labels") or {}
            )

        def send(kind: str, obj: dict[str, Any]) -> None:
            self._chunk(json.dumps({"type": kind, "object": obj}).encode() + b"\n")

        try:
            with api.lock:
                if since in ("", "0"):
                    for obj in api.list(resource.kind, namespace or None):
                        if wanted(obj):
                            send("ADDED", obj)
                    position = api.rv
                elif int(since) < api.compacted_rv:
                    gone = status_body(410, f"too old resource version: {since} ({api.compacted_rv})", "Expired")
                    send("ERROR", gone)
                    self._chunk(b"")
                    return
                else:
                    position = int(since)
            for event in self._events_after(resource, position, deadline):
                new_in, old_in = wanted(event.obj), wanted(event.old)
                if event.type == "DELETED":
                    if old_in:
                        send("DELETED", event.obj)
                elif new_in:
                    send("MODIFIED" if old_in else "ADDED", event.obj)
                elif old_in:
                    send("DELETED", event.obj)  # it no longer matches the selector
            if query.get("allowWatchBookmarks") == "true":
                bookmark = {
                    "kind": resource.kind,
                    "apiVersion": resource.api_version,
                    "metadata": {"resourceVersion": str(api.rv)},
                }
                send("BOOKMARK", bookmark)
            self._chunk(b"")
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def _events_after(self, resource: Resource, position: int, deadline: float) -> Iterator[Event]:
        api = self.api
        while True:
            with api.lock:
                fresh = [e for e in api.events if e.rv > position and e.resource == resource]
                if not fresh:
                    left = deadline - time.monotonic()
                    if left <= 0 or api.stopping:
                        return
                    api.lock.wait(timeout=min(left, 0.2))
                    continue
            for event in fresh:
                position = event.rv
                yield event


@contextmanager
def running(**kwargs: Any) -> Iterator[FakeApiServer]:
    server = FakeApiServer(**kwargs).start()
    try:
        yield server
    finally:
        server.stop()
