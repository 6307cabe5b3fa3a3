"""The permission matrix: every page and API route against every kind of person.

Roles: anonymous, member (team A), lead (team A), lead of another team (team B), finance, admin.
Outcomes: OK (2xx), LOGIN (redirect to the sign-in page), DENY (403 or 404: either way nothing is shown),
AUTH (API: 401 or 403 for an anonymous caller).

Every named route must appear in ROUTES (a test enforces it), so a new page or API view cannot ship without a
decision on who may use it. Writes by a denied role are also sent, and must change nothing: the audit log, which
every service appends to, keeps the same length.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pytest
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from django.utils import timezone

from apps.accounts.models import GroupTeamMapping
from apps.accounts.services import api_token_create
from apps.audit.models import AuditEvent
from apps.audit.services import Actor, audit_record
from apps.catalog.tests.factories import CatalogModelFactory
from apps.endpoints.tests.factories import EndpointFactory, QuotaRequestFactory
from apps.inventory.tests.factories import ClusterFactory, ClusterGpuInventoryFactory, GpuPriceFactory, GpuTypeFactory
from apps.metering.models import Statement
from apps.teams.models import Membership
from apps.teams.tests.factories import BudgetFactory, GpuQuotaFactory

ROLES = ("anon", "member", "lead", "other_lead", "finance", "admin")
OK, LOGIN, DENY, AUTH = "ok", "login", "deny", "auth"


def everyone(outcome: str, anon: str = LOGIN) -> dict[str, str]:
    return {"anon": anon} | {role: outcome for role in ROLES[1:]}


def only(allowed: set[str], anon: str = LOGIN) -> dict[str, str]:
    return {"anon": anon} | {role: OK if role in allowed else DENY for role in ROLES[1:]}


TEAM_A_VIEWERS = {"member", "lead", "finance", "admin"}
ADMIN = {"admin"}
LEADS = {"lead", "other_lead", "admin"}  # may open the endpoint and quota request forms (for their own teams)
TEAM_A_MANAGERS = {"lead", "admin"}  # may change team A's endpoints
TEAM_A_USERS = {"member", "lead", "admin"}  # may send prompts to team A's endpoints
FINANCE = {"finance", "admin"}  # statements, budget policy


@dataclass(frozen=True)
class World:
    objects: dict[str, Any]
    users: dict[str, Any]

    def kwargs(self, names: tuple[str, ...]) -> dict[str, Any]:
        return {name: self.objects[name] for name in names}


@pytest.fixture
def world(team_a, team_b, admin_user, finance_user, lead_user, member_user, other_lead) -> World:
    gpu = GpuTypeFactory(sku="H100-80GB")
    GpuPriceFactory(gpu_type=gpu)
    future_price = GpuPriceFactory(gpu_type=gpu, effective_from=timezone.now() + dt.timedelta(days=30))
    cluster = ClusterFactory(name="ray-local")
    ClusterGpuInventoryFactory(cluster=cluster, gpu_type=gpu)
    quota = GpuQuotaFactory(team=team_a, gpu_type=gpu)
    budget = BudgetFactory(team=team_a, monthly_amount=Decimal("1000"))
    model = CatalogModelFactory(name="llama-8b")
    event = audit_record(actor=Actor.system(), action="team.update", target=team_a, team=team_a, after={"x": 1})
    token, _ = api_token_create(actor=Actor(user=lead_user), user=lead_user, name="ci")
    member_membership = Membership.objects.get(user=member_user, team=team_a)
    endpoint = EndpointFactory(team=team_a, model=model, cluster=cluster, gpu_type=gpu, requested_by=lead_user)
    quota_request = QuotaRequestFactory(team=team_a, gpu_type=gpu, requested_by=lead_user)
    statement = Statement.objects.create(
        team=team_a, month=dt.date(2020, 1, 1), currency="USD", time_zone="UTC", generated_at=timezone.now()
    )
    objects = {
        "slug": team_a.slug,
        "membership_id": member_membership.pk,
        "member_pk": member_membership.pk,
        "quota_id": quota.pk,
        "quota_pk": quota.pk,
        "budget_pk": budget.pk,
        "token_id": token.pk,
        "token_pk": token.pk,
        "gpu_pk": gpu.pk,
        "price_pk": future_price.pk,
        "cluster_pk": cluster.pk,
        "model_pk": model.pk,
        "event_pk": event.pk,
        "endpoint_pk": endpoint.pk,
        "quota_request_pk": quota_request.pk,
        "statement_pk": statement.pk,
        "group_mapping_pk": GroupTeamMapping.objects.create(group_id="g-a", team=team_a, role="member").pk,
    }
    users = {
        "anon": None,
        "member": member_user,
        "lead": lead_user,
        "other_lead": other_lead,
        "finance": finance_user,
        "admin": admin_user,
    }
    return World(objects=objects, users=users)


@dataclass(frozen=True)
class Route:
    name: str
    get: dict[str, str] | None  # expected outcome of GET per role; None: GET is not how this route is used
    args: tuple[str, ...] = ()  # world objects to pass as url kwargs, named as in the url pattern
    url_kwargs: tuple[str, ...] = ()
    # Writes sent by roles that are denied: method and body. Each must be refused and change nothing.
    writes: tuple[tuple[str, dict[str, Any]], ...] = ()
    write_allowed: set[str] = frozenset()  # roles for which a write may succeed (not sent)
    api: bool = False


def page(
    name: str, get: dict[str, str] | None, *kw: str, post: dict[str, Any] | None = None, allowed: set[str] = frozenset()
) -> Route:
    writes = (("post", post),) if post is not None else ()
    return Route(name, get, url_kwargs=kw, writes=writes, write_allowed=allowed)


def api(
    name: str,
    get: dict[str, str] | None,
    *kw: str,
    writes: tuple[tuple[str, dict[str, Any]], ...] = (),
    allowed: set[str] = frozenset(),
) -> Route:
    return Route(name, get, url_kwargs=kw, writes=writes, write_allowed=allowed, api=True)


SIGNED_IN = everyone(OK)
API_SIGNED_IN = everyone(OK, anon=AUTH)

ROUTES: list[Route] = [
    # --- pages ---------------------------------------------------------------------------------
    page("core:home", SIGNED_IN),
    page("dashboards:team", only(TEAM_A_VIEWERS), "slug"),
    page("dashboards:endpoint", only(TEAM_A_VIEWERS), "endpoint_pk"),
    page("dashboards:finance", only(FINANCE)),
    page("dashboards:finance_team", only(FINANCE), "slug"),
    page("dashboards:finance_endpoint", only(FINANCE), "endpoint_pk"),
    page("dashboards:admin", only(ADMIN)),
    page("dashboards:frontier", SIGNED_IN),
    page("accounts:group_mappings", only(ADMIN)),
    page(
        "accounts:group_mapping_create",
        only(ADMIN),
        post={"group_id": "g-new", "team": "1", "role": "lead"},
        allowed=ADMIN,
    ),
    page(
        "accounts:group_mapping_edit",
        only(ADMIN),
        "group_mapping_pk",
        post={"group_id": "g-x", "team": "1", "role": "lead"},
        allowed=ADMIN,
    ),
    page("accounts:group_mapping_delete", only(ADMIN), "group_mapping_pk", post={}, allowed=ADMIN),
    page("accounts:tokens", SIGNED_IN, post={"name": "x"}, allowed=set(ROLES[1:])),
    page("accounts:token_revoke", only({"lead"}), "token_id", post={}, allowed={"lead"}),
    page("teams:list", SIGNED_IN),
    page("teams:create", only(ADMIN), post={"slug": "new-team", "name": "New"}, allowed=ADMIN),
    page("teams:detail", only(TEAM_A_VIEWERS), "slug"),
    page("teams:edit", only(ADMIN), "slug", post={"name": "Renamed"}, allowed=ADMIN),
    page("teams:delete", only(ADMIN), "slug", post={}, allowed=ADMIN),
    page(
        "teams:member_add",
        only({"lead", "admin"}),
        "slug",
        post={"username": "finance", "role": "member"},
        allowed={"lead", "admin"},
    ),
    page("teams:member_role", None, "slug", "membership_id", post={"role": "lead"}, allowed={"lead", "admin"}),
    page("teams:member_remove", only({"lead", "admin"}), "slug", "membership_id", post={}, allowed={"lead", "admin"}),
    page("teams:quota_set", only(ADMIN), "slug", post={"gpu_type": "1", "limit": "99"}, allowed=ADMIN),
    page("teams:quota_delete", only(ADMIN), "slug", "quota_id", post={}, allowed=ADMIN),
    page(
        "teams:budget_set",
        only({"finance", "admin"}),
        "slug",
        post={"monthly_amount": "5", "currency": "USD", "alert_thresholds": "80"},
        allowed={"finance", "admin"},
    ),
    page("inventory:gpu_types", SIGNED_IN),
    page("inventory:gpu_type_create", only(ADMIN), post={"sku": "L4", "memory_gib": "24"}, allowed=ADMIN),
    page("inventory:gpu_type_edit", only(ADMIN), "gpu_pk", post={"sku": "X", "memory_gib": "1"}, allowed=ADMIN),
    page("inventory:gpu_type_delete", only(ADMIN), "gpu_pk", post={}, allowed=ADMIN),
    page("inventory:gpu_price_add", only(ADMIN), "gpu_pk", post={"hourly_price": "9"}, allowed=ADMIN),
    page("inventory:gpu_price_delete", only(ADMIN), "price_pk", post={}, allowed=ADMIN),
    page("inventory:clusters", only(ADMIN)),
    page("inventory:cluster_create", only(ADMIN), post={"name": "c", "runtime": "ray"}, allowed=ADMIN),
    page("inventory:cluster_detail", only(ADMIN), "cluster_pk"),
    page("inventory:cluster_edit", only(ADMIN), "cluster_pk", post={"name": "renamed"}, allowed=ADMIN),
    page("inventory:cluster_delete", only(ADMIN), "cluster_pk", post={}, allowed=ADMIN),
    page("inventory:cluster_inventory_set", None, "cluster_pk", post={"gpu_type": "1", "count": "1"}, allowed=ADMIN),
    page("catalog:list", SIGNED_IN),
    page("catalog:create", only(ADMIN), post={"name": "m"}, allowed=ADMIN),
    page("catalog:detail", SIGNED_IN, "model_pk"),
    page("catalog:edit", only(ADMIN), "model_pk", post={"name": "m"}, allowed=ADMIN),
    page("catalog:set_status", None, "model_pk", post={"status": "blocked"}, allowed=ADMIN),
    page("catalog:delete", only(ADMIN), "model_pk", post={}, allowed=ADMIN),
    page("audit:list", only({"lead", "other_lead", "finance", "admin"})),
    page("endpoints:list", SIGNED_IN),
    page(
        "endpoints:request",
        only(LEADS),
        post={"team": "1", "name": "x", "model": "1", "cluster": "1"},
        allowed=LEADS,
    ),
    page("endpoints:estimate", only(LEADS)),
    page("endpoints:queue", only(ADMIN)),
    page("endpoints:detail", only(TEAM_A_VIEWERS), "endpoint_pk"),
    page("endpoints:status", only(TEAM_A_VIEWERS), "endpoint_pk"),
    page("endpoints:change", only(TEAM_A_MANAGERS), "endpoint_pk", post={"max_replicas": "2"}, allowed=TEAM_A_MANAGERS),
    page("endpoints:delete", only(TEAM_A_MANAGERS), "endpoint_pk", post={}, allowed=TEAM_A_MANAGERS),
    page("endpoints:retry", None, "endpoint_pk", post={}, allowed=TEAM_A_MANAGERS),
    page("endpoints:try", only(TEAM_A_USERS), "endpoint_pk", post={"prompt": "hi"}, allowed=TEAM_A_USERS),
    page("endpoints:approve", None, "endpoint_pk", post={}, allowed=ADMIN),
    page("endpoints:reject", only(ADMIN), "endpoint_pk", post={"reason": "no"}, allowed=ADMIN),
    page("endpoints:quota_requests", SIGNED_IN),
    page(
        "endpoints:quota_request_new",
        only(LEADS),
        post={"team": "1", "gpu_type": "1", "requested_limit": "99", "justification": "x"},
        allowed=LEADS,
    ),
    page("endpoints:quota_request_approve", None, "quota_request_pk", post={}, allowed=ADMIN),
    page("endpoints:quota_request_deny", only(ADMIN), "quota_request_pk", post={"reason": "no"}, allowed=ADMIN),
    # Costs: finance and admins see every team's; leads and members their own team's; another team's never.
    page("metering:overview", SIGNED_IN),
    page("metering:team", only(TEAM_A_VIEWERS), "slug"),
    page("metering:policy", only(FINANCE), "slug", post={"block_requests_over_budget": "on"}, allowed=FINANCE),
    page("metering:statements", SIGNED_IN),
    page("metering:generate", only(FINANCE), post={"month": "2020-01"}, allowed=FINANCE),
    page("metering:statement", only(TEAM_A_VIEWERS), "statement_pk"),
    page("metering:close", only(FINANCE), "statement_pk", post={}, allowed=FINANCE),
    # --- API -----------------------------------------------------------------------------------
    api("api:me", API_SIGNED_IN),
    api("api:tokens-list", API_SIGNED_IN),
    api("api:tokens-detail", only({"lead"}, anon=AUTH), "token_pk", writes=(("delete", {}),), allowed={"lead"}),
    api("api:tokens-revoke", None, "token_pk", writes=(("post", {}),), allowed={"lead"}),
    api("api:teams-list", API_SIGNED_IN, writes=(("post", {"slug": "zz", "name": "Z"}),), allowed=ADMIN),
    api(
        "api:teams-detail",
        only(TEAM_A_VIEWERS, anon=AUTH),
        "slug",
        writes=(("patch", {"name": "Hacked"}), ("delete", {})),
        allowed=ADMIN,
    ),
    api(
        "api:memberships-list",
        API_SIGNED_IN,
        writes=(("post", {"team": "team-a", "user": "finance"}),),
        allowed={"lead", "admin"},
    ),
    api(
        "api:memberships-detail",
        only(TEAM_A_VIEWERS, anon=AUTH),
        "member_pk",
        writes=(("patch", {"role": "lead"}), ("delete", {})),
        allowed={"lead", "admin"},
    ),
    api(
        "api:quotas-list",
        API_SIGNED_IN,
        writes=(("post", {"team": "team-a", "gpu_type": "H100-80GB", "limit": 99}),),
        allowed=ADMIN,
    ),
    api(
        "api:quotas-detail",
        only(TEAM_A_VIEWERS, anon=AUTH),
        "quota_pk",
        writes=(("patch", {"limit": 99}), ("delete", {})),
        allowed=ADMIN,
    ),
    api(
        "api:budgets-list",
        API_SIGNED_IN,
        writes=(("post", {"team": "team-a", "monthly_amount": "1"}),),
        allowed={"finance", "admin"},
    ),
    api(
        "api:budgets-detail",
        only(TEAM_A_VIEWERS, anon=AUTH),
        "budget_pk",
        writes=(("patch", {"monthly_amount": "1"}),),
        allowed={"finance", "admin"},
    ),
    api("api:gpu-types-list", API_SIGNED_IN, writes=(("post", {"sku": "L4", "memory_gib": 24}),), allowed=ADMIN),
    api(
        "api:gpu-types-detail",
        API_SIGNED_IN,
        "gpu_pk",
        writes=(("patch", {"memory_gib": 1}), ("delete", {})),
        allowed=ADMIN,
    ),
    api(
        "api:gpu-prices-list",
        API_SIGNED_IN,
        writes=(("post", {"gpu_type": "H100-80GB", "hourly_price": "9", "effective_from": "2099-01-01T00:00:00Z"}),),
        allowed=ADMIN,
    ),
    api("api:gpu-prices-detail", API_SIGNED_IN, "price_pk", writes=(("delete", {}),), allowed=ADMIN),
    api(
        "api:clusters-list",
        API_SIGNED_IN,
        writes=(("post", {"name": "c2", "runtime": "ray", "ray_dashboard_url": "http://127.0.0.1:1"}),),
        allowed=ADMIN,
    ),
    api(
        "api:clusters-detail",
        API_SIGNED_IN,
        "cluster_pk",
        writes=(("patch", {"description": "x"}), ("delete", {})),
        allowed=ADMIN,
    ),
    api(
        "api:clusters-set-inventory",
        None,
        "cluster_pk",
        writes=(("post", {"gpu_type": "H100-80GB", "count": 1}),),
        allowed=ADMIN,
    ),
    api("api:catalog-models-list", API_SIGNED_IN, writes=(("post", {"name": "m"}),), allowed=ADMIN),
    api(
        "api:catalog-models-detail",
        API_SIGNED_IN,
        "model_pk",
        writes=(("patch", {"status": "blocked"}), ("delete", {})),
        allowed=ADMIN,
    ),
    api(
        "api:audit-events-list",
        only({"lead", "other_lead", "finance", "admin"}, anon=AUTH),
        writes=(("post", {"action": "x"}),),
    ),
    api(
        "api:audit-events-detail",
        only({"lead", "finance", "admin"}, anon=AUTH),
        "event_pk",
        writes=(("patch", {"action": "x"}), ("delete", {})),
    ),
    api(
        "api:endpoints-list",
        API_SIGNED_IN,
        writes=(("post", {"team": "team-a", "name": "x", "model": "llama-8b", "cluster": "ray-local"}),),
        allowed=TEAM_A_MANAGERS,
    ),
    api(
        "api:endpoints-detail",
        only(TEAM_A_VIEWERS, anon=AUTH),
        "endpoint_pk",
        writes=(("patch", {"max_replicas": 2}), ("delete", {})),
        allowed=TEAM_A_MANAGERS,
    ),
    api("api:endpoints-operations", only(TEAM_A_VIEWERS, anon=AUTH), "endpoint_pk"),
    api("api:endpoints-approve", None, "endpoint_pk", writes=(("post", {}),), allowed=ADMIN),
    api("api:endpoints-reject", None, "endpoint_pk", writes=(("post", {"reason": "no"}),), allowed=ADMIN),
    api("api:endpoints-retry", None, "endpoint_pk", writes=(("post", {}),), allowed=TEAM_A_MANAGERS),
    api(
        "api:quota-requests-list",
        API_SIGNED_IN,
        writes=(("post", {"team": "team-a", "gpu_type": "H100-80GB", "requested_limit": 99, "justification": "x"}),),
        allowed=TEAM_A_MANAGERS,
    ),
    api("api:quota-requests-detail", only(TEAM_A_VIEWERS, anon=AUTH), "quota_request_pk"),
    api("api:quota-requests-approve", None, "quota_request_pk", writes=(("post", {}),), allowed=ADMIN),
    api("api:quota-requests-deny", None, "quota_request_pk", writes=(("post", {"reason": "no"}),), allowed=ADMIN),
    api("api:chargeback", API_SIGNED_IN),
    api("api:chargeback-generate", None, writes=(("post", {"month": "2020-01"}),), allowed=FINANCE),
    api("api:statements-list", API_SIGNED_IN),
    api("api:statements-detail", only(TEAM_A_VIEWERS, anon=AUTH), "statement_pk"),
    api("api:statements-close", None, "statement_pk", writes=(("post", {}),), allowed=FINANCE),
    api("api:usage", API_SIGNED_IN),
    api("api:usage-endpoint", only(TEAM_A_VIEWERS, anon=AUTH), "endpoint_pk"),
    api("api-schema", API_SIGNED_IN),
    api("api-docs", API_SIGNED_IN),
]

# Routes outside the matrix, each with the reason.
UNLISTED = {
    "core:healthz": "public probe, no data",
    "core:readyz": "public probe, no data",
    "accounts:login": "public sign-in page",
    "accounts:logout": "ends the caller's own session",
    "accounts:sso_login": "public: starts the sign-in with Microsoft (404 unless PARETO_AUTH_MODES has entra)",
    "accounts:sso_callback": "public: the provider's redirect back; refused without this browser's pending flow",
}

URL_KWARG_NAMES = {
    "token_pk": "pk",
    "member_pk": "pk",
    "quota_pk": "pk",
    "budget_pk": "pk",
    "gpu_pk": "pk",
    "price_pk": "pk",
    "cluster_pk": "pk",
    "model_pk": "pk",
    "event_pk": "pk",
    "endpoint_pk": "pk",
    "quota_request_pk": "pk",
    "statement_pk": "pk",
    "group_mapping_pk": "pk",
}


def _named_routes() -> Iterator[str]:
    def walk(patterns: list[Any], namespace: str | None) -> Iterator[str]:
        for p in patterns:
            if isinstance(p, URLResolver):
                if p.namespace == "admin":
                    continue
                inner = ":".join(x for x in (namespace, p.namespace) if x) or None
                yield from walk(p.url_patterns, inner)
            elif isinstance(p, URLPattern) and p.name and "format" not in str(p.pattern):
                yield f"{namespace}:{p.name}" if namespace else p.name

    yield from walk(get_resolver().url_patterns, None)


def test_every_named_route_is_in_the_matrix():
    listed = {r.name for r in ROUTES} | set(UNLISTED)
    missing = sorted(set(_named_routes()) - listed)
    assert not missing, f"add these routes to the permission matrix: {missing}"
    stale = sorted(listed - set(_named_routes()))
    assert not stale, f"these matrix entries name no route: {stale}"


def _url(route: Route, world: World) -> str:
    kwargs = {URL_KWARG_NAMES.get(k, k): world.objects[k] for k in route.url_kwargs}
    return reverse(route.name, kwargs=kwargs)


def _client(world: World, role: str, client_for: Callable[[Any], Client]) -> Client:
    return client_for(world.users[role])


def _check(outcome: str, response: Any, route: Route, role: str, method: str) -> None:
    status = response.status_code
    where = f"{method.upper()} {route.name} as {role}: got {status}"
    if outcome == OK:
        assert 200 <= status < 300, where
    elif outcome == LOGIN:
        assert status == 302 and "/login/" in response["Location"], where
    elif outcome == DENY:
        assert status in (403, 404), where
    elif outcome == AUTH:
        assert status in (401, 403), where
    else:  # pragma: no cover - a typo in the table
        raise AssertionError(outcome)


@pytest.mark.parametrize("route", [r for r in ROUTES if r.get is not None], ids=lambda r: r.name)
def test_get_matrix(route: Route, world: World, client_for):
    for role in ROLES:
        response = _client(world, role, client_for).get(_url(route, world))
        _check(route.get[role], response, route, role, "get")


@pytest.mark.parametrize("route", [r for r in ROUTES if r.writes], ids=lambda r: r.name)
def test_denied_writes_change_nothing(route: Route, world: World, client_for):
    for role in ROLES:
        if role in route.write_allowed:
            continue
        for method, body in route.writes:
            before = AuditEvent.objects.count()
            client = _client(world, role, client_for)
            call = getattr(client, method)
            if route.api:
                response = call(_url(route, world), data=json.dumps(body), content_type="application/json")
            else:
                response = call(_url(route, world), data=body)
            expected = (AUTH if route.api else LOGIN) if role == "anon" else DENY
            if route.api and role != "anon" and response.status_code == 405:
                expected = "405"  # read-only resource: the method itself is refused
            if expected == "405":
                assert response.status_code == 405
            else:
                _check(expected, response, route, role, method)
            assert AuditEvent.objects.count() == before, f"{method} {route.name} as {role} changed something"


def test_non_admins_never_see_cluster_connection_settings(world: World, client_for):
    for role in ("member", "lead", "other_lead", "finance"):
        body = _client(world, role, client_for).get(reverse("api:clusters-list")).json()
        assert body["results"], role
        assert all("ray_dashboard_url" not in row and "secret_env" not in row for row in body["results"]), role
    admin_rows = _client(world, "admin", client_for).get(reverse("api:clusters-list")).json()["results"]
    assert admin_rows[0]["ray_dashboard_url"]


def test_a_team_never_sees_another_teams_rows_in_api_lists(world: World, client_for, team_b):
    GpuQuotaFactory(team=team_b, gpu_type=GpuTypeFactory(sku="L4"))
    BudgetFactory(team=team_b)
    for role, visible in (
        ("lead", {"team-a"}),
        ("member", {"team-a"}),
        ("other_lead", {"team-b"}),
        ("finance", {"team-a", "team-b"}),
        ("admin", {"team-a", "team-b"}),
    ):
        client = _client(world, role, client_for)
        teams = {row["slug"] for row in client.get(reverse("api:teams-list")).json()["results"]}
        assert teams == visible, role
        for name in ("api:quotas-list", "api:budgets-list", "api:memberships-list"):
            rows = client.get(reverse(name)).json()["results"]
            assert {row["team"] for row in rows} <= visible, (role, name)
