"""Stand-ins at the endpoint lifecycle's seams, plus a look into the real Celery broker.

- `FakeRuntime`: an in-memory `runtime.base.Runtime`. `apply` replaces the whole set of applications, the way
  Ray's PUT does; what `observe` reports per application is scripted by the test. `install_fake_runtime` puts it
  behind `lifecycle.runtime_for`, the one place the lifecycle asks for a runtime.
- `FakeRayDashboard`: a real HTTP server on 127.0.0.1 that answers `/api/serve/applications/` GET and PUT with
  the JSON shapes of Ray 2.60's dashboard (ServeInstanceDetails; see ARCHITECTURE.md), so `RayRuntime` and
  `RayDashboardClient` are tested over real sockets.
- `queued_tasks` / `clear_queue`: the messages Celery published to the Redis broker (REDIS_URL), read back.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

from apps.core.health import redis_client
from apps.endpoints.models import APP_PREFIX
from apps.endpoints.runtime.base import Observed, Phase

if TYPE_CHECKING:
    import pytest

    from apps.endpoints.models import Endpoint
    from apps.inventory.models import Cluster

CELERY_QUEUE = "celery"  # kombu's Redis transport keeps the default queue as a list of this name


# --- the runtime seam ------------------------------------------------------------------------------------------
@dataclass
class FakeRuntime:
    """What runs on one fake cluster: application name -> the endpoint generation that was applied."""

    deployed: dict[str, int] = field(default_factory=dict)
    # Applications a PUT left out but that are still going away (Ray shows them DELETING for a while).
    going: set[str] = field(default_factory=set)
    # Per application, what the runtime says (phase, message, replicas); `current` is computed, not scripted.
    scripted: dict[str, Observed] = field(default_factory=dict)
    apply_errors: list[Exception] = field(default_factory=list)
    observe_errors: list[Exception] = field(default_factory=list)
    applies: list[list[str]] = field(default_factory=list)
    observe_calls: int = 0
    slow_delete: bool = False

    # -- Runtime protocol --
    def apply(self, cluster: Cluster, endpoints: Sequence[Endpoint]) -> None:
        self.applies.append(sorted(e.app_name for e in endpoints))
        if self.apply_errors:
            raise self.apply_errors.pop(0)
        wanted = {e.app_name: e.generation for e in endpoints}
        removed = set(self.deployed) - set(wanted)
        if self.slow_delete:
            self.going |= removed
        self.going -= set(wanted)
        self.deployed = wanted

    def observe(self, cluster: Cluster, endpoints: Sequence[Endpoint]) -> tuple[dict[int, Observed], list[str]]:
        self.observe_calls += 1
        if self.observe_errors:
            raise self.observe_errors.pop(0)
        result: dict[int, Observed] = {}
        for endpoint in endpoints:
            name = endpoint.app_name
            if name in self.going:
                result[endpoint.pk] = Observed(Phase.DELETING)
            elif name in self.deployed:
                seen = self.scripted.get(name, Observed(Phase.DEPLOYING))
                result[endpoint.pk] = replace(seen, current=self.deployed[name] == endpoint.generation)
            else:
                result[endpoint.pk] = Observed(Phase.MISSING)
        watched = {e.app_name for e in endpoints}
        orphans = sorted(n for n in self.deployed if n.startswith(APP_PREFIX) and n not in watched)
        return result, orphans

    def base_url(self, cluster: Cluster, endpoint: Endpoint) -> str:
        return f"http://serve.test{endpoint.route_prefix}/v1"

    # -- scripting --
    def report(self, endpoint: Endpoint, phase: Phase, message: str = "", replicas: int = 0) -> None:
        self.scripted[endpoint.app_name] = Observed(phase, message, replicas=replicas)

    def lose(self, endpoint: Endpoint) -> None:
        """The application vanished behind Pareto's back (a cluster restart, an operator's PUT)."""
        self.deployed.pop(endpoint.app_name, None)

    def plant(self, app_name: str, generation: int = 1) -> None:
        """An application with Pareto's prefix that no endpoint wants (left from a lost database, say)."""
        self.deployed[app_name] = generation

    def settle(self) -> None:
        """Applications that were going away are gone."""
        self.going.clear()


def install_fake_runtime(monkeypatch: pytest.MonkeyPatch) -> FakeRuntime:
    fake = FakeRuntime()
    monkeypatch.setattr("apps.endpoints.lifecycle.runtime_for", lambda cluster: fake)
    return fake


# --- a Ray dashboard over HTTP -----------------------------------------------------------------------------------
@dataclass
class DashboardCall:
    method: str
    path: str
    body: Any
    headers: dict[str, str]


class FakeRayDashboard:
    """Ray's dashboard as far as `/api/serve/applications/` goes, on a real socket.

    A PUT validates the config (400 in plain text, as Ray does for a pydantic error), then REPLACES the set of
    declaratively deployed applications; applications deployed through Serve's Python API (`source:
    "imperative"`) survive a PUT, as in Ray. An application whose config did not change keeps its status; a new or
    changed one starts DEPLOYING with no route and no deployments yet. Shapes follow the responses recorded from
    Ray 2.60 in docs/runtime.md. `fail` queues (status, text) answers for the next requests; `delay` makes every
    answer late (timeouts).
    """

    def __init__(self) -> None:
        self.apps: dict[str, dict[str, Any]] = {}
        self.http_options: dict[str, Any] = {"host": "0.0.0.0", "port": 8000}  # noqa: S104 (Ray's default)
        self.calls: list[DashboardCall] = []
        self.failures: list[tuple[int, str]] = []
        self.delay = 0.0
        self.linger_deleted = False  # when set, a PUT leaves dropped applications DELETING until settle()
        self.lock = threading.Lock()
        dashboard = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:  # keep test output clean
                pass

            def do_GET(self) -> None:
                dashboard._handle(self, "GET")

            def do_PUT(self) -> None:
                dashboard._handle(self, "PUT")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.server.block_on_close = False
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}"

    def __enter__(self) -> FakeRayDashboard:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    # -- scripting --
    def fail(self, status: int, text: str = "") -> None:
        self.failures.append((status, text))

    def add_foreign(self, name: str, route_prefix: str, *, imperative: bool = False) -> dict[str, Any]:
        config = {"name": name, "route_prefix": route_prefix, "import_path": "shop.app:build"}
        app = self._details(config, source="imperative" if imperative else "declarative")
        app.update(status="RUNNING", route_prefix=route_prefix)
        if imperative:
            app["deployed_app_config"] = None  # Ray keeps no config for serve.run applications
        self.apps[name] = app
        return config

    def set_status(
        self,
        name: str,
        status: str,
        *,
        message: str = "",
        replicas: int = 0,
        deployment_status: str = "HEALTHY",
        deployment_message: str = "",
    ) -> None:
        """Move an application on, with the deployments Ray Serve LLM shows once its replicas start
        (`LLMServer:<model id>` and `OpenAiIngress`; a STARTING replica has only four fields)."""
        app = self.apps[name]
        config = app["deployed_app_config"] or {}
        app.update(status=status, message=message, route_prefix=config.get("route_prefix"), docs_path="/docs")
        for llm_config in (config.get("args") or {}).get("llm_configs") or []:
            llm = f"LLMServer:{llm_config['model_loading_config']['model_id']}"
            running = [_replica(f"{name}#{llm}#r{i}", "RUNNING") for i in range(replicas)]
            app["deployments"][llm] = {
                "name": llm,
                "status": deployment_status,
                "status_trigger": "CONFIG_UPDATE_COMPLETED"
                if deployment_status == "HEALTHY"
                else "CONFIG_UPDATE_STARTED",
                "message": deployment_message,
                "target_num_replicas": max(replicas, 1),
                "replicas": [*running, _replica(f"{name}#{llm}#s", "STARTING")],
                "recent_dead_replicas": [],
            }
            app["deployments"]["OpenAiIngress"] = {
                "name": "OpenAiIngress",
                "status": "HEALTHY",
                "status_trigger": "CONFIG_UPDATE_COMPLETED",
                "message": "",
                "target_num_replicas": 1,
                "replicas": [_replica(f"{name}#OpenAiIngress#i", "RUNNING")],
                "recent_dead_replicas": [],
            }

    def settle(self) -> None:
        """Applications that were being deleted are gone (Ray takes ~2.5 s)."""
        self.apps = {n: a for n, a in self.apps.items() if a["status"] != "DELETING"}

    def puts(self) -> list[Any]:
        return [c.body for c in self.calls if c.method == "PUT"]

    # -- the HTTP side --
    def _details(self, config: dict[str, Any], *, source: str = "declarative") -> dict[str, Any]:
        """An application just after the PUT: DEPLOYING, no route yet, no deployments (as recorded)."""
        return {
            "name": config["name"],
            "route_prefix": None,
            "docs_path": None,
            "status": "DEPLOYING",
            "message": "",
            "last_deployed_time_s": time.time(),
            "deployed_app_config": json.loads(json.dumps(config)),
            "source": source,
            "deployments": {},
            "external_scaler_enabled": False,
            "deployment_topology": None,
        }

    def _invalid(self, body: Any) -> str | None:
        if not isinstance(body, dict) or not isinstance(body.get("applications"), list):
            return "1 validation error for ServeDeploySchema\napplications\n  Field required"
        names, prefixes = set(), set()
        for app in body["applications"]:
            if not isinstance(app, dict) or not app.get("name") or ":" not in str(app.get("import_path", "")):
                return f"1 validation error for ServeApplicationSchema\nimport_path\n  Invalid: {app!r}"
            if app["name"] in names:
                return f"Found multiple configs for application {app['name']}."
            prefix = app.get("route_prefix", "/")
            if prefix in prefixes:
                return f'Found duplicate route prefix "{prefix}".'
            names.add(app["name"])
            prefixes.add(prefix)
        return None

    def _handle(self, handler: BaseHTTPRequestHandler, method: str) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length) if length else b""
        body: Any
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode(errors="replace")
        with self.lock:
            self.calls.append(DashboardCall(method, handler.path, body, dict(handler.headers)))
            failure = self.failures.pop(0) if self.failures else None
        if self.delay:
            time.sleep(self.delay)
        if handler.path != "/api/serve/applications/":
            return self._answer(handler, 404, "404: Not Found", "text/plain")
        if failure is not None:
            return self._answer(handler, failure[0], failure[1], "text/plain")
        if method == "GET":
            details = {
                "controller_info": {"node_id": "n1", "actor_id": "a1"},
                "proxy_location": "HeadOnly",
                "http_options": self.http_options,
                "proxies": {},
                "applications": self.apps,
                "target_capacity": None,
            }
            return self._answer(handler, 200, json.dumps(details), "application/json")
        problem = self._invalid(body)
        if problem:
            return self._answer(handler, 400, problem, "text/plain")
        with self.lock:
            wanted = {config["name"] for config in body["applications"]}
            kept = {n: a for n, a in self.apps.items() if a.get("source") == "imperative"}
            if self.linger_deleted:
                for n, a in self.apps.items():
                    if n not in wanted and n not in kept:
                        kept[n] = {**a, "status": "DELETING", "message": "", "deployments": {}}
            for config in body["applications"]:
                old = self.apps.get(config["name"])
                unchanged = old is not None and old["status"] != "DELETING" and old.get("deployed_app_config") == config
                kept[config["name"]] = old if old is not None and unchanged else self._details(config)
            self.apps = kept
            if body.get("http_options"):
                self.http_options = {**self.http_options, **body["http_options"]}
        return self._answer(handler, 200, "", "text/plain")

    @staticmethod
    def _answer(handler: BaseHTTPRequestHandler, status: int, text: str, content_type: str) -> None:
        data = text.encode()
        handler.send_response(status)
        handler.send_header("Content-Type", content_type)
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)


def _replica(replica_id: str, state: str) -> dict[str, Any]:
    replica: dict[str, Any] = {"actor_name": f"SERVE_REPLICA::{replica_id}", "replica_id": replica_id, "state": state}
    replica["start_time_s"] = time.time()
    if state != "STARTING":
        replica.update(node_id="n1", node_ip="127.0.0.1", actor_id="a", worker_id="w", pid=4242, log_file_path="/x")
    return replica


# --- the real broker ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class QueuedTask:
    name: str
    args: list[Any]
    eta: str | None


def queued_tasks(name: str | None = None) -> list[QueuedTask]:
    """Messages waiting in the Redis broker's default queue, oldest first (kombu pushes on the left)."""
    tasks = []
    for raw in reversed(redis_client().lrange(CELERY_QUEUE, 0, -1)):
        message = json.loads(raw)
        body = message["body"]
        if message.get("properties", {}).get("body_encoding") == "base64":
            body = base64.b64decode(body)
        args, _kwargs, _embed = json.loads(body)
        headers = message["headers"]
        tasks.append(QueuedTask(headers["task"], list(args), headers.get("eta")))
    return [t for t in tasks if name is None or t.name == name]


def clear_queue() -> None:
    redis_client().delete(CELERY_QUEUE)


@contextmanager
def empty_queue() -> Iterator[None]:
    clear_queue()
    try:
        yield
    finally:
        clear_queue()
