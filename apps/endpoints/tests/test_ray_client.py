"""RayRuntime and RayDashboardClient over real HTTP, against a local server that answers like Ray 2.60's dashboard
(`/api/serve/applications/`; shapes from ARCHITECTURE.md and Ray's ServeInstanceDetails)."""

from __future__ import annotations

import socket

import pytest

from apps.audit.services import Actor
from apps.catalog.tests.factories import CatalogModelFactory
from apps.endpoints import lifecycle, services
from apps.endpoints.models import Endpoint, Operation
from apps.endpoints.runtime.base import PermanentRuntimeError, Phase, TransientRuntimeError, runtime_for
from apps.endpoints.runtime.ray import RayDashboardClient, RayRuntime
from apps.endpoints.runtime.serve_config import serve_application
from apps.endpoints.tests.factories import EndpointFactory
from apps.endpoints.tests.fakes import FakeRayDashboard
from apps.inventory.tests.factories import ClusterFactory, ClusterGpuInventoryFactory, GpuTypeFactory
from apps.teams.tests.factories import GpuQuotaFactory, TeamFactory

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def dashboard():
    with FakeRayDashboard() as server:
        yield server


@pytest.fixture
def world(db, team_a, lead_user, dashboard):
    gpu = GpuTypeFactory(sku="H100-80GB", ray_accelerator_type="H100")
    cluster = ClusterFactory(name="east", ray_dashboard_url=dashboard.url, ray_serve_url="http://10.1.2.3:8000")
    ClusterGpuInventoryFactory(cluster=cluster, gpu_type=gpu, count=16)
    GpuQuotaFactory(team=team_a, gpu_type=gpu, limit=16)
    model = CatalogModelFactory(name="llama-8b", recommended_gpu_type=gpu)
    return {"team": team_a, "cluster": cluster, "gpu": gpu, "model": model, "user": lead_user}


def endpoint(world, name="chat", **kw):
    kw.setdefault("state", Endpoint.State.PROVISIONING)
    return EndpointFactory(
        team=kw.pop("team", world["team"]),
        cluster=world["cluster"],
        gpu_type=world["gpu"],
        model=world["model"],
        requested_by=world["user"],
        name=name,
        **kw,
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- apply -----------------------------------------------------------------------------------------------------
def test_apply_sends_one_put_with_every_desired_app_and_foreign_apps_unchanged(world, dashboard):
    shop = dashboard.add_foreign("shop", "/shop")
    dashboard.add_foreign("legacy", "/legacy", imperative=True)
    first, second = endpoint(world, "chat"), endpoint(world, "code", state=Endpoint.State.READY)
    dashboard.apps["pareto-99999"] = dashboard._details(
        {"name": "pareto-99999", "route_prefix": "/gone/app", "import_path": "ray.serve.llm:build_openai_app"}
    )

    RayRuntime().apply(world["cluster"], [first, second])

    puts = dashboard.puts()
    assert len(puts) == 1
    (sent,) = puts
    by_name = {app["name"]: app for app in sent["applications"]}
    assert set(by_name) == {first.app_name, second.app_name, "shop"}
    assert by_name["shop"] == shop  # somebody else's application goes back exactly as Ray reported it
    assert by_name[first.app_name] == serve_application(first)
    assert sent["http_options"] == {"host": "10.1.2.3", "port": 8000}
    put_call = next(c for c in dashboard.calls if c.method == "PUT")
    assert put_call.headers["Content-Type"] == "application/json"
    # On the cluster: ours and the foreign ones; the Pareto app no endpoint wants is gone; serve.run's survives.
    assert set(dashboard.apps) == {first.app_name, second.app_name, "shop", "legacy"}


def test_apply_with_nothing_desired_still_puts_the_foreign_apps(world, dashboard):
    shop = dashboard.add_foreign("shop", "/shop")
    dashboard.apps["pareto-5"] = dashboard._details({"name": "pareto-5", "import_path": "a:b", "route_prefix": "/x"})
    RayRuntime().apply(world["cluster"], [])
    assert dashboard.puts() == [{"applications": [shop], "http_options": {"host": "10.1.2.3", "port": 8000}}]
    assert set(dashboard.apps) == {"shop"}


def test_apply_without_a_serve_url_sends_no_http_options(world, dashboard):
    world["cluster"].ray_serve_url = ""
    RayRuntime().apply(world["cluster"], [endpoint(world)])
    assert "http_options" not in dashboard.puts()[0]


def test_a_config_ray_refuses_is_a_permanent_error_with_rays_text(world, dashboard):
    dashboard.add_foreign("squatter", "/team-a/chat")  # takes the route the endpoint wants
    with pytest.raises(PermanentRuntimeError) as info:
        RayRuntime().apply(world["cluster"], [endpoint(world, "chat")])
    assert "(400)" in str(info.value)
    assert 'Found duplicate route prefix "/team-a/chat"' in str(info.value)
    assert set(dashboard.apps) == {"squatter"}


# --- observe ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("status", "phase"),
    [
        ("NOT_STARTED", Phase.DEPLOYING),
        ("DEPLOYING", Phase.DEPLOYING),
        ("RUNNING", Phase.RUNNING),
        ("DEPLOY_FAILED", Phase.FAILED),
        ("UNHEALTHY", Phase.UNHEALTHY),
        ("DELETING", Phase.DELETING),
        ("SOMETHING_NEW", Phase.DEPLOYING),
    ],
)
def test_observe_maps_rays_statuses(world, dashboard, status, phase):
    ep = endpoint(world)
    runtime = RayRuntime()
    runtime.apply(world["cluster"], [ep])
    dashboard.set_status(ep.app_name, status, message="what Ray says")
    observed, orphans = runtime.observe(world["cluster"], [ep])
    assert observed[ep.pk].phase == phase
    assert "what Ray says" in observed[ep.pk].message
    assert orphans == []


def test_observe_reports_missing_apps_and_pareto_orphans_but_not_foreign_apps(world, dashboard):
    dashboard.add_foreign("shop", "/shop")
    dashboard.apps["pareto-777"] = dashboard._details(
        {"name": "pareto-777", "import_path": "a:b", "route_prefix": "/x"}
    )
    ep = endpoint(world)
    observed, orphans = RayRuntime().observe(world["cluster"], [ep])
    assert observed[ep.pk].phase == Phase.MISSING
    assert orphans == ["pareto-777"]


def test_a_pareto_app_already_going_away_is_no_orphan(world, dashboard):
    dashboard.apps["pareto-777"] = dashboard._details(
        {"name": "pareto-777", "import_path": "a:b", "route_prefix": "/x"}
    )
    dashboard.apps["pareto-777"]["status"] = "DELETING"
    _, orphans = RayRuntime().observe(world["cluster"], [])
    assert orphans == []  # applying again cannot make it go faster


def test_observe_knows_whether_the_current_spec_runs(world, dashboard):
    ep = endpoint(world, state=Endpoint.State.READY)
    runtime = RayRuntime()
    runtime.apply(world["cluster"], [ep])
    dashboard.set_status(ep.app_name, "RUNNING", replicas=1)
    assert runtime.observe(world["cluster"], [ep])[0][ep.pk].current is True
    # An update bumps the spec: until it is applied, what runs is the old one.
    ep.max_replicas, ep.engine_args = 2, {"enable_prefix_caching": True}
    seen = runtime.observe(world["cluster"], [ep])[0][ep.pk]
    assert (seen.phase, seen.current) == (Phase.RUNNING, False)
    runtime.apply(world["cluster"], [ep])
    assert runtime.observe(world["cluster"], [ep])[0][ep.pk].current is True


def test_observe_counts_running_engine_replicas_only(world, dashboard, team_b):
    lab = TeamFactory(slug="ingress-lab")
    plain, tricky = endpoint(world, "chat"), endpoint(world, "router-test", team=lab)
    runtime = RayRuntime()
    runtime.apply(world["cluster"], [plain, tricky])
    dashboard.set_status(plain.app_name, "RUNNING", replicas=3)  # plus one STARTING and one ingress replica
    dashboard.set_status(tricky.app_name, "RUNNING", replicas=2)
    observed, _ = runtime.observe(world["cluster"], [plain, tricky])
    assert observed[plain.pk].replicas == 3
    assert observed[tricky.pk].replicas == 2  # "ingress" in the model id must not hide the engine


def test_observe_message_has_the_app_and_unhealthy_deployment_messages(world, dashboard):
    ep = endpoint(world)
    runtime = RayRuntime()
    runtime.apply(world["cluster"], [ep])
    dashboard.set_status(
        ep.app_name,
        "DEPLOYING",
        message="Deploying app.",
        deployment_status="UPDATING",
        deployment_message="Deployment has taken more than 30s to be scheduled.",
    )
    message = runtime.observe(world["cluster"], [ep])[0][ep.pk].message
    assert message == (
        f"Deploying app.\nLLMServer:{ep.served_model_id}: Deployment has taken more than 30s to be scheduled."
    )


def test_a_failed_engine_says_why_without_colour_codes_or_the_whole_traceback(world, dashboard):
    ep = endpoint(world)
    runtime = RayRuntime()
    runtime.apply(world["cluster"], [ep])
    traceback = (
        "The deployment failed to start 3 times in a row. See controller log\n"
        + "\x1b[36mray::ServeReplica:pareto:LLMServer.initialize_and_get_metadata()\x1b[39m\n"
        + '  File "/venv/lib/python3.11/site-packages/ray/serve/_private/replica.py", line 1, in x\n' * 60
        + "RuntimeError: Failed to create vLLM engine config: 1 validation error for ModelConfig"
    )
    dashboard.set_status(
        ep.app_name,
        "DEPLOY_FAILED",
        message=f"Failed to update the deployments ['LLMServer:{ep.served_model_id}'].",
        deployment_status="DEPLOY_FAILED",
        deployment_message=traceback,
    )
    seen = runtime.observe(world["cluster"], [ep])[0][ep.pk]
    assert seen.phase == Phase.FAILED
    assert "\x1b[" not in seen.message
    assert seen.message.startswith("Failed to update the deployments")
    assert "The deployment failed to start 3 times in a row" in seen.message
    assert seen.message.endswith(
        "RuntimeError: Failed to create vLLM engine config: 1 validation error for ModelConfig"
    )
    assert len(seen.message) < 2000 < len(traceback)


def test_an_app_just_put_has_no_deployments_yet_and_counts_as_deploying(world, dashboard):
    ep = endpoint(world)
    runtime = RayRuntime()
    runtime.apply(world["cluster"], [ep])
    assert dashboard.apps[ep.app_name]["route_prefix"] is None  # as Ray shows it for the first ~15 s
    seen = runtime.observe(world["cluster"], [ep])[0][ep.pk]
    assert (seen.phase, seen.current, seen.replicas, seen.message) == (Phase.DEPLOYING, True, 0, "")


def test_base_url_is_the_serve_url_plus_the_route(world):
    ep = endpoint(world)
    assert RayRuntime().base_url(world["cluster"], ep) == "http://10.1.2.3:8000/team-a/chat/v1"


def test_runtime_for_picks_the_clusters_runtime_and_refuses_others(world):
    from apps.endpoints.runtime.kube import KubernetesRuntime

    assert isinstance(runtime_for(world["cluster"]), RayRuntime)
    k8s = ClusterFactory(runtime="kubernetes", ray_dashboard_url="")
    assert isinstance(runtime_for(k8s), KubernetesRuntime)
    other = ClusterFactory(runtime="slurm", ray_dashboard_url="")
    with pytest.raises(PermanentRuntimeError):
        runtime_for(other)


# --- error classification --------------------------------------------------------------------------------------
@pytest.mark.parametrize("status", [500, 502, 503, 504, 429])
@pytest.mark.parametrize("method", ["get", "put"])
def test_server_errors_and_throttling_are_transient(dashboard, status, method):
    dashboard.fail(status, "The GCS may be down, please retry later")
    client = RayDashboardClient(dashboard.url, timeout=5)
    with pytest.raises(TransientRuntimeError) as info:
        client.get_applications() if method == "get" else client.put_applications({"applications": []})
    assert str(status) in str(info.value)
    assert "retry later" in str(info.value)


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422])
def test_client_errors_are_permanent_with_the_text(dashboard, status):
    dashboard.fail(status, "1 validation error for ServeDeploySchema")
    with pytest.raises(PermanentRuntimeError) as info:
        RayDashboardClient(dashboard.url, timeout=5).put_applications({"applications": []})
    assert f"({status})" in str(info.value)
    assert "1 validation error for ServeDeploySchema" in str(info.value)


def test_connection_refused_is_transient():
    client = RayDashboardClient(f"http://127.0.0.1:{free_port()}", timeout=2)
    with pytest.raises(TransientRuntimeError) as info:
        client.get_applications()
    assert "did not answer" in str(info.value)


def test_a_timeout_is_transient(dashboard):
    dashboard.delay = 1.0
    with pytest.raises(TransientRuntimeError):
        RayDashboardClient(dashboard.url, timeout=0.2).get_applications()


def test_a_200_that_is_not_json_is_permanent(dashboard, monkeypatch):
    monkeypatch.setattr(dashboard, "_answer", _html_instead(dashboard._answer))
    with pytest.raises(PermanentRuntimeError) as info:
        RayDashboardClient(dashboard.url, timeout=5).get_applications()
    assert "did not answer like a Ray dashboard" in str(info.value)


def _html_instead(answer):
    def html(handler, status, text, content_type):
        return answer(handler, 200, "<html>Sign in</html>", "text/html")

    return html


def test_a_malformed_url_is_permanent():
    with pytest.raises(PermanentRuntimeError):
        RayDashboardClient("http://[::1", timeout=1).get_applications()


def test_a_cluster_without_a_dashboard_url_is_permanent():
    with pytest.raises(PermanentRuntimeError):
        RayDashboardClient("")


def test_proxies_from_the_environment_are_ignored(dashboard, monkeypatch):
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("http_proxy", f"http://127.0.0.1:{free_port()}")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    assert RayDashboardClient(dashboard.url, timeout=5).get_applications() == {}


# --- the lifecycle over HTTP -----------------------------------------------------------------------------------
def test_lifecycle_from_request_to_ready_to_deleted_over_http(world, dashboard, lead_user):
    cluster = world["cluster"]
    ep = services.endpoint_request(
        actor=Actor(user=lead_user), team=world["team"], name="chat", model=world["model"], cluster=cluster
    )
    lifecycle.cluster_apply(cluster_id=cluster.pk)
    assert Endpoint.objects.get(pk=ep.pk).state == Endpoint.State.PROVISIONING
    assert dashboard.apps[ep.app_name]["status"] == "DEPLOYING"
    assert lifecycle.cluster_observe(cluster_id=cluster.pk).in_transit

    dashboard.set_status(ep.app_name, "RUNNING", replicas=1)
    result = lifecycle.cluster_observe(cluster_id=cluster.pk)
    ep = Endpoint.objects.get(pk=ep.pk)
    assert (ep.state, ep.base_url, ep.observed_replicas) == ("ready", "http://10.1.2.3:8000/team-a/chat/v1", 1)
    assert (result.in_transit, result.needs_apply) == (False, False)

    services.endpoint_delete(actor=Actor(user=lead_user), endpoint=ep)
    lifecycle.cluster_apply(cluster_id=cluster.pk)
    assert ep.app_name not in dashboard.apps
    lifecycle.cluster_observe(cluster_id=cluster.pk)
    assert Endpoint.objects.get(pk=ep.pk).state == Endpoint.State.DELETED


def test_lifecycle_waits_while_ray_is_still_deleting(world, dashboard, lead_user):
    cluster = world["cluster"]
    dashboard.linger_deleted = True
    ep = services.endpoint_request(
        actor=Actor(user=lead_user), team=world["team"], name="chat", model=world["model"], cluster=cluster
    )
    lifecycle.cluster_apply(cluster_id=cluster.pk)
    dashboard.set_status(ep.app_name, "RUNNING", replicas=1)
    lifecycle.cluster_observe(cluster_id=cluster.pk)
    services.endpoint_delete(actor=Actor(user=lead_user), endpoint=Endpoint.objects.get(pk=ep.pk))
    lifecycle.cluster_apply(cluster_id=cluster.pk)
    assert dashboard.apps[ep.app_name]["status"] == "DELETING"
    result = lifecycle.cluster_observe(cluster_id=cluster.pk)
    assert (result.in_transit, result.needs_apply) == (True, False)  # no second PUT while Ray deletes it
    assert Endpoint.objects.get(pk=ep.pk).state == Endpoint.State.DELETING
    dashboard.settle()
    result = lifecycle.cluster_observe(cluster_id=cluster.pk)
    assert (result.in_transit, result.needs_apply) == (False, False)
    assert Endpoint.objects.get(pk=ep.pk).state == Endpoint.State.DELETED
    assert len(dashboard.puts()) == 2


def test_lifecycle_apply_during_a_dashboard_outage_retries_later(world, dashboard, lead_user):
    cluster = world["cluster"]
    ep = services.endpoint_request(
        actor=Actor(user=lead_user), team=world["team"], name="chat", model=world["model"], cluster=cluster
    )
    dashboard.fail(503, "Failed to get a response from the controller.")
    with pytest.raises(TransientRuntimeError):
        lifecycle.cluster_apply(cluster_id=cluster.pk)
    op = Operation.objects.get(endpoint=ep)
    assert (op.state, op.attempts) == ("pending", 1)
    assert "503" in op.message and "Failed to get a response" in op.message
    lifecycle.cluster_apply(cluster_id=cluster.pk)
    assert Endpoint.objects.get(pk=ep.pk).state == Endpoint.State.PROVISIONING


def test_lifecycle_fails_the_endpoint_ray_refuses(world, dashboard, lead_user):
    cluster = world["cluster"]
    dashboard.add_foreign("squatter", "/team-a/chat")
    ep = services.endpoint_request(
        actor=Actor(user=lead_user), team=world["team"], name="chat", model=world["model"], cluster=cluster
    )
    lifecycle.cluster_apply(cluster_id=cluster.pk)
    ep = Endpoint.objects.get(pk=ep.pk)
    assert ep.state == Endpoint.State.FAILED
    assert 'duplicate route prefix "/team-a/chat"' in ep.state_message
