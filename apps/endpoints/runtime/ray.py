"""The Ray runtime: Serve applications driven through the Ray dashboard's REST API.

This is the only module that talks to Ray. `PUT /api/serve/applications/` replaces the WHOLE set of applications,
so `apply` always sends the full desired set computed from the database, plus every application Pareto does not own
exactly as Ray reports it (so that an operator's own applications survive). The caller holds the per-cluster lock.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import requests
from django.conf import settings
from django.utils.module_loading import import_string

from apps.endpoints.models import APP_PREFIX

from .base import Observed, PermanentRuntimeError, Phase, TransientRuntimeError

if TYPE_CHECKING:
    from apps.endpoints.models import Endpoint
    from apps.inventory.models import Cluster

PUT_TIMEOUT_SECONDS = 60.0
_PHASES = {
    "NOT_STARTED": Phase.DEPLOYING,
    "DEPLOYING": Phase.DEPLOYING,
    "RUNNING": Phase.RUNNING,
    "DEPLOY_FAILED": Phase.FAILED,
    "UNHEALTHY": Phase.UNHEALTHY,
    "DELETING": Phase.DELETING,
}


def serve_application(endpoint: Endpoint) -> dict[str, Any]:
    """The endpoint's Serve application, from the builder named by PARETO_SERVE_APP_BUILDER (by default
    `serve_config.serve_application`; the overhead benchmark names a light one)."""
    builder: Callable[[Endpoint], dict[str, Any]] = import_string(settings.PARETO_SERVE_APP_BUILDER)
    return builder(endpoint)


class RayDashboardClient:
    """A thin client for the Serve part of Ray's dashboard REST API, with errors sorted into transient/permanent."""

    def __init__(self, base_url: str, *, timeout: float | None = None, session: requests.Session | None = None):
        if not base_url:
            raise PermanentRuntimeError("The cluster has no Ray dashboard URL.")
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout if timeout is not None else settings.PARETO_RAY_HTTP_TIMEOUT
        self.session = session or requests.Session()
        # The dashboard is on the cluster's own network; proxies from the environment must not capture it.
        self.session.trust_env = False

    def _call(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        url = f"{self.base_url}{path}"
        try:
            response = self.session.request(method, url, **{"timeout": self.timeout, **kwargs})
        except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError) as exc:
            raise TransientRuntimeError(f"Ray dashboard at {self.base_url} did not answer: {exc}") from exc
        except requests.RequestException as exc:  # a malformed URL and the like: trying again cannot help
            raise PermanentRuntimeError(f"Cannot call the Ray dashboard at {self.base_url}: {exc}") from exc
        if response.status_code == 429 or response.status_code >= 500:
            raise TransientRuntimeError(f"Ray dashboard answered {response.status_code}: {response.text[:2000]}")
        if response.status_code >= 400:
            # Serve validation errors come back as 400 with the reason in plain text.
            raise PermanentRuntimeError(f"Ray refused the request ({response.status_code}): {response.text[:4000]}")
        return response

    def get_applications(self) -> dict[str, Any]:
        applications = self.get_status().get("applications") or {}
        if not isinstance(applications, dict):
            raise PermanentRuntimeError(f"{self.base_url} answered with applications that are not an object.")
        return dict(applications)

    def get_status(self) -> dict[str, Any]:
        response = self._call("GET", "/api/serve/applications/")
        try:
            body = response.json()
        except ValueError as exc:
            # A 200 that is not JSON is not Ray's dashboard (a login page, a proxy): fix the URL, not retry.
            raise PermanentRuntimeError(
                f"{self.base_url} did not answer like a Ray dashboard: {response.text[:200]!r}"
            ) from exc
        if not isinstance(body, dict):
            raise PermanentRuntimeError(f"{self.base_url} did not answer like a Ray dashboard: {body!r:.200}")
        return body

    def put_applications(self, config: Mapping[str, Any]) -> None:
        # The first PUT on a cluster starts Serve's controller and proxy before it answers: 2.4 s on an idle
        # 2-core machine, 11 s seen under load. Cut off at the usual timeout it would fail and be retried.
        timeout = max(self.timeout, PUT_TIMEOUT_SECONDS)
        self._call("PUT", "/api/serve/applications/", json=dict(config), timeout=timeout)


def _subset(desired: Any, deployed: Any) -> bool:
    """Whether everything Pareto set is what runs (Ray may add defaults of its own)."""
    if isinstance(desired, Mapping):
        return isinstance(deployed, Mapping) and all(_subset(v, deployed.get(k)) for k, v in desired.items())
    if isinstance(desired, list):
        return (
            isinstance(deployed, list)
            and len(desired) == len(deployed)
            and all(_subset(a, b) for a, b in zip(desired, deployed, strict=True))
        )
    return bool(desired == deployed)


def _running_replicas(app: Mapping[str, Any]) -> int:
    count = 0
    for name, deployment in (app.get("deployments") or {}).items():
        # Names are "<class>:<model id>" for the engine ("LLMServer:team-chat-7") and bare for the HTTP side
        # ("OpenAiIngress", "LLMRouter"); look at the class only, so a model id containing "ingress" still counts.
        kind = name.split(":", 1)[0].lower()
        if "ingress" in kind or "router" in kind:
            continue
        replicas = deployment.get("replicas") or []
        count = max(count, sum(1 for r in replicas if r.get("state") == "RUNNING"))
    return count


_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_HEAD, _TAIL = 300, 1200


def _readable(text: Any) -> str:
    """Ray's messages carry ANSI colours and ~4 KB tracebacks whose cause is on the LAST lines: keep the start
    (what failed) and the end (why), drop the middle."""
    clean = _ANSI.sub("", str(text or "")).strip()
    if len(clean) <= _HEAD + _TAIL + 50:
        return clean
    return f"{clean[:_HEAD]} …({len(clean) - _HEAD - _TAIL} characters left out)… {clean[-_TAIL:]}"


def _message(app: Mapping[str, Any]) -> str:
    parts = [_readable(app.get("message"))]
    for name, deployment in (app.get("deployments") or {}).items():
        text = _readable(deployment.get("message"))
        if text and deployment.get("status") != "HEALTHY":
            parts.append(f"{name}: {text}")
    return "\n".join(p for p in parts if p)


def _http_options(cluster: Cluster) -> dict[str, Any]:
    if not cluster.ray_serve_url:
        return {}
    parts = urlsplit(cluster.ray_serve_url)
    options: dict[str, Any] = {}
    if parts.hostname:
        options["host"] = parts.hostname
    if parts.port:
        options["port"] = parts.port
    return options


class RayRuntime:
    def __init__(self, client: RayDashboardClient | None = None):
        self._client = client

    def client(self, cluster: Cluster) -> RayDashboardClient:
        return self._client or RayDashboardClient(cluster.ray_dashboard_url)

    def desired_config(
        self, cluster: Cluster, endpoints: Sequence[Endpoint], observed: Mapping[str, Any]
    ) -> dict[str, Any]:
        apps = [serve_application(e) for e in endpoints]
        ours = {a["name"] for a in apps}
        for name, app in sorted(observed.items()):
            if name.startswith(APP_PREFIX) or name in ours:
                continue
            deployed = app.get("deployed_app_config")
            if deployed:  # somebody else's application: send it back unchanged so the PUT keeps it
                apps.append(dict(deployed))
        config: dict[str, Any] = {"applications": apps}
        http = _http_options(cluster)
        if http:
            config["http_options"] = http
        return config

    def apply(self, cluster: Cluster, endpoints: Sequence[Endpoint]) -> None:
        client = self.client(cluster)
        observed = client.get_applications()
        client.put_applications(self.desired_config(cluster, endpoints, observed))

    def observe(self, cluster: Cluster, endpoints: Sequence[Endpoint]) -> tuple[dict[int, Observed], list[str]]:
        apps = self.client(cluster).get_applications()
        result: dict[int, Observed] = {}
        wanted = set()
        for endpoint in endpoints:
            wanted.add(endpoint.app_name)
            app = apps.get(endpoint.app_name)
            if app is None:
                result[endpoint.pk] = Observed(Phase.MISSING)
                continue
            phase = _PHASES.get(str(app.get("status")), Phase.DEPLOYING)
            current = _subset(serve_application(endpoint), app.get("deployed_app_config") or {})
            result[endpoint.pk] = Observed(phase, _message(app), current=current, replicas=_running_replicas(app))
        # An application Ray is already deleting needs no further apply: it is on its way out.
        orphans = sorted(
            name
            for name, app in apps.items()
            if name.startswith(APP_PREFIX) and name not in wanted and app.get("status") != "DELETING"
        )
        return result, orphans

    def base_url(self, cluster: Cluster, endpoint: Endpoint) -> str:
        root = (cluster.ray_serve_url or "").rstrip("/")
        return f"{root}{endpoint.route_prefix}/v1"
