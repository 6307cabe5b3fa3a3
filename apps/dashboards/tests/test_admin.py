"""The admin dashboard: platform counts, approval queue, GPU quota use and capacity, failed operations."""

from __future__ import annotations

import csv
import io
from typing import Any

from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from apps.audit.services import Actor, audit_record
from apps.catalog.tests.factories import CatalogModelFactory
from apps.core.charts import assert_valid_figure
from apps.endpoints.models import Endpoint, Operation
from apps.endpoints.tests.factories import EndpointFactory, QuotaRequestFactory
from apps.inventory.charts import capacity_chart
from apps.inventory.selectors import Capacity, capacity_by_gpu_type
from apps.inventory.tests.factories import ClusterFactory, ClusterGpuInventoryFactory, GpuTypeFactory
from apps.teams.charts import quota_use_chart
from apps.teams.selectors import QuotaUse, quota_use
from apps.teams.tests.factories import GpuQuotaFactory, TeamFactory

URL = "/dashboards/admin/"


def read_csv(response: Any) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(response.content.decode())))


def test_url_is_the_named_route() -> None:
    assert reverse("dashboards:admin") == URL


def test_only_admins(client_for, admin_user, finance_user, lead_user, member_user, other_lead) -> None:
    anonymous = client_for(None).get(URL)
    assert anonymous.status_code == 302 and "login" in anonymous["Location"]
    for user in (finance_user, lead_user, member_user, other_lead):
        assert client_for(user).get(URL).status_code == 403
    response = client_for(admin_user).get(URL)
    assert response.status_code == 200
    assert response.context["tab"] == "admin"
    assert [t.key for t in response.context["tabs"]] == ["admin", "finance", "frontier"]


def test_empty_platform_shows_empty_states(client_for, admin_user) -> None:
    response = client_for(admin_user).get(URL)
    body = response.content.decode()
    for chart in response.context["charts"].values():
        assert chart.is_empty
        assert_valid_figure(chart)
    assert "No team has a GPU quota or a reservation yet." in body
    assert "No cluster lists any GPUs yet." in body
    assert "No operation has failed." in body


def test_counts_and_recent_changes(client_for, admin_user, team_a, team_b) -> None:
    GpuTypeFactory(sku="H100-80GB")
    ClusterFactory(name="ray-1")
    CatalogModelFactory(name="llama")
    for i in range(12):
        audit_record(actor=Actor.system(), action="team.update", target=team_a, team=team_a, after={"n": i})
    response = client_for(admin_user).get(URL)
    counts = response.context["counts"]
    assert (counts.teams, counts.gpu_types, counts.clusters, counts.catalog_models) == (2, 1, 1, 1)
    assert len(response.context["recent_events"]) == 10
    assert all(hasattr(event, "changes") for event in response.context["recent_events"])
    body = response.content.decode()
    assert "Recent changes" in body and reverse("audit:list") in body


def test_approval_queue_counts(client_for, admin_user, team_a) -> None:
    EndpointFactory.create_batch(2, team=team_a, state=Endpoint.State.PENDING_APPROVAL)
    EndpointFactory(team=team_a, state=Endpoint.State.READY)
    QuotaRequestFactory(team=team_a)
    QuotaRequestFactory(team=team_a, state="denied")
    response = client_for(admin_user).get(URL)
    assert response.context["pending"] == {"endpoints": 2, "quota_requests": 1}
    body = response.content.decode()
    assert reverse("endpoints:queue") in body
    assert reverse("endpoints:quota_requests") + "?state=pending" in body


def test_recent_failed_operations(client_for, admin_user, team_a) -> None:
    endpoint = EndpointFactory(team=team_a, name="broken", state=Endpoint.State.FAILED)
    for i in range(12):
        Operation.objects.create(
            cluster=endpoint.cluster, endpoint=endpoint, kind="apply", state="failed", message=f"boom {i}"
        )
    Operation.objects.create(cluster=endpoint.cluster, endpoint=endpoint, kind="update", state="succeeded")
    Operation.objects.create(cluster=endpoint.cluster, kind="reconcile", state="failed", message="cluster gone")
    response = client_for(admin_user).get(URL)
    failures = response.context["failures"]
    assert len(failures) == 10
    assert all(op.state == "failed" for op in failures)
    assert failures[0].message == "cluster gone" and failures[0].endpoint is None
    assert failures[1].message == "boom 11"
    body = response.content.decode()
    assert reverse("endpoints:detail", args=[endpoint.pk]) in body
    assert "boom 11" in body and "Team A" in body and "boom 1<" not in body


def test_capacity_numbers(client_for, admin_user, team_a) -> None:
    h100 = GpuTypeFactory(sku="H100-80GB")
    l4 = GpuTypeFactory(sku="L4")
    a100 = GpuTypeFactory(sku="A100")
    one, two = ClusterFactory(name="one"), ClusterFactory(name="two")
    ClusterGpuInventoryFactory(cluster=one, gpu_type=h100, count=16)
    ClusterGpuInventoryFactory(cluster=two, gpu_type=h100, count=8)
    ClusterGpuInventoryFactory(cluster=one, gpu_type=l4, count=2)
    EndpointFactory(team=team_a, cluster=one, gpu_type=h100, gpus_per_replica=2, max_replicas=2)  # 4 reserved
    EndpointFactory(team=team_a, cluster=two, gpu_type=h100, state=Endpoint.State.DELETING)  # still holds 1
    EndpointFactory(team=team_a, cluster=one, gpu_type=h100, state=Endpoint.State.PENDING_APPROVAL)  # holds none
    EndpointFactory(team=team_a, cluster=one, gpu_type=l4, gpus_per_replica=3)  # 3 of 2: over
    EndpointFactory(team=team_a, cluster=one, gpu_type=a100)  # reserved with no inventory
    assert capacity_by_gpu_type() == [
        Capacity("A100", total=0, reserved=1),
        Capacity("H100-80GB", total=24, reserved=5),
        Capacity("L4", total=2, reserved=3),
    ]
    response = client_for(admin_user).get(URL)
    chart = response.context["charts"]["capacity"]
    assert_valid_figure(chart)
    assert chart.rows[1] == ["H100-80GB", 24, 5, 19, 0]
    assert chart.rows[2] == ["L4", 2, 3, 0, 1]
    assert [trace["name"] for trace in chart.data] == ["Reserved", "Free", "Reserved beyond capacity"]
    assert chart.data[0]["y"] == [0, 5, 2]  # reserved within capacity: stacked bars reach the installed total
    rows = read_csv(client_for(admin_user).get(URL + "?csv=capacity"))
    assert rows[1] == {
        "GPU type": "H100-80GB",
        "Total GPUs": "24",
        "Reserved": "5",
        "Free": "19",
        "Reserved beyond capacity": "0",
    }


def test_quota_use_numbers(client_for, admin_user, team_a, team_b) -> None:
    h100 = GpuTypeFactory(sku="H100-80GB")
    l4 = GpuTypeFactory(sku="L4")
    GpuQuotaFactory(team=team_a, gpu_type=h100, limit=8)
    GpuQuotaFactory(team=team_a, gpu_type=l4, limit=4)
    GpuQuotaFactory(team=team_b, gpu_type=h100, limit=10)
    EndpointFactory(team=team_a, gpu_type=h100, gpus_per_replica=2, max_replicas=3)  # 6 of 8
    EndpointFactory(team=team_a, gpu_type=h100, state=Endpoint.State.FAILED)  # holds nothing
    EndpointFactory(team=team_b, gpu_type=l4)  # 1 with no quota
    assert quota_use() == [
        QuotaUse("team-b", "Team B", "L4", limit=0, reserved=1),
        QuotaUse("team-a", "Team A", "H100-80GB", limit=8, reserved=6),
        QuotaUse("team-a", "Team A", "L4", limit=4, reserved=0),
        QuotaUse("team-b", "Team B", "H100-80GB", limit=10, reserved=0),
    ]
    response = client_for(admin_user).get(URL)
    chart = response.context["charts"]["quota_use"]
    assert_valid_figure(chart)
    rows = read_csv(client_for(admin_user).get(URL + "?csv=quota_use"))
    assert rows[0]["Use %"] == "no quota"
    assert rows[1] == {
        "Team": "team-a",
        "Team name": "Team A",
        "GPU type": "H100-80GB",
        "Reserved GPUs": "6",
        "Limit": "8",
        "Use %": "75.0",
    }
    assert "1 over their limit" in chart.description


def test_quota_chart_draws_the_top_15_and_the_csv_has_every_row() -> None:
    rows = sorted(
        [QuotaUse(f"t{i:02d}", f"T{i}", "H100", limit=100, reserved=i) for i in range(40)], key=QuotaUse.sort_key
    )
    chart = quota_use_chart(rows)
    assert_valid_figure(chart)
    assert len(chart.rows) == 40
    reserved = chart.data[0]
    assert len(reserved["y"]) == 15
    assert reserved["y"][-1] == "t39 · H100"  # the fullest at the top (plotly draws categories bottom-up)
    assert reserved["y"][0] == "t25 · H100"
    assert chart.data[1]["x"] == [100] * 15
    assert "the 15 closest to their limits" in chart.description


def test_capacity_chart_without_overcommit_has_two_traces() -> None:
    chart = capacity_chart([Capacity("H100", total=8, reserved=2)])
    assert_valid_figure(chart)
    assert [t["name"] for t in chart.data] == ["Reserved", "Free"]


def _platform(teams: int) -> None:
    gpu = GpuTypeFactory(sku="H100-80GB")
    cluster = ClusterFactory()
    ClusterGpuInventoryFactory(cluster=cluster, gpu_type=gpu, count=1000)
    for _ in range(teams):
        team = TeamFactory()
        GpuQuotaFactory(team=team, gpu_type=gpu, limit=8)
        endpoint = EndpointFactory(team=team, gpu_type=gpu, cluster=cluster)
        EndpointFactory(team=team, gpu_type=gpu, cluster=cluster, state=Endpoint.State.PENDING_APPROVAL)
        QuotaRequestFactory(team=team, gpu_type=gpu)
        Operation.objects.create(cluster=cluster, endpoint=endpoint, kind="apply", state="failed", message="x")
        audit_record(actor=Actor.system(), action="team.update", target=team, team=team, after={"x": 1})


def _count(client: Any) -> int:
    client.get(URL)
    with CaptureQueriesContext(connection) as ctx:
        assert client.get(URL).status_code == 200
    return len(ctx.captured_queries)


def test_query_count_is_the_same_for_2_and_20_teams(client_for, admin_user) -> None:
    client = client_for(admin_user)
    _platform(2)
    small = _count(client)
    _platform(18)
    assert _count(client) == small
    assert small <= 18, small  # 7 signed-in overhead + 11 for the page


def test_home_page_of_an_admin_is_this_dashboard(client_for, admin_user) -> None:
    response = client_for(admin_user).get(reverse("core:home"))
    assert response.status_code == 200
    assert "dashboards/admin.html" in [t.name for t in response.templates]
