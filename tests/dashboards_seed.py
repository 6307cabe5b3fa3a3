"""A small, consistent world for the dashboard tests: two teams, one person per role, three endpoints with traffic.

Built with the factories and, where practical, the real metering code: the last one to two hours are accrued by
`accrual.accrue_minutes` (GPU time and price) with synthetic traffic on top, and rolled up by `rollup`; older hours
are written as hourly rows (as `metering.generate.generate_hours` does) and rolled up into days by
`rollup.rollup_day`, so minutes, hours, days, month totals and statements all agree. Last month's statements are
made by `services.statements_generate` (team B's is then closed).

Traffic is deterministic. Latency histograms follow a log-normal distribution per endpoint (bucket counts from
its CDF, so no sampling); traffic older than a day is slower and lighter than the last day's, so a dashboard whose
window moves from 24 hours to 7 days draws different numbers, not only more of them.

| endpoint          | team | GPU       | GPUs | price/h | model quality |
| ----------------- | ---- | --------- | ---- | ------- | ------------- |
| chat-a            | A    | H100-80GB | 1    | 2.50    | 71.5          |
| code-a            | A    | H100-80GB | 2    | 2.50    | 64.0          |
| embed-b           | B    | L4-24GB   | 1    | 0.71    | 55.0          |
| rerank-b (pending)| B    | L4-24GB   | 1    |         |               |
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, cast

from django.db.models import Sum
from django.utils import timezone

from apps.accounts.models import User
from apps.accounts.tests.factories import PASSWORD, UserFactory
from apps.audit.services import Actor
from apps.catalog.models import CatalogModel
from apps.catalog.tests.factories import CatalogModelFactory
from apps.endpoints.models import Endpoint, Operation, QuotaRequest
from apps.endpoints.tests.factories import EndpointFactory, QuotaRequestFactory
from apps.inventory.models import Cluster, GpuType
from apps.inventory.tests.factories import (
    ClusterFactory,
    ClusterGpuInventoryFactory,
    GpuPriceFactory,
    GpuTypeFactory,
)
from apps.metering import selectors, services
from apps.metering.accrual import accrue_minutes
from apps.metering.ingest import USAGE_FIELDS, floor_hour, floor_minute, layout_ids
from apps.metering.models import Statement, UsageDay, UsageHour, UsageMinute
from apps.metering.money import exact_cost, round_money
from apps.metering.rollup import day_bounds, local_day, rollup, rollup_day
from apps.teams.models import Membership, Team
from apps.teams.tests.factories import BudgetFactory, GpuQuotaFactory, MembershipFactory, TeamFactory

__all__ = ["PASSWORD", "World", "seed_world"]

MINUTE = dt.timedelta(minutes=1)
HOUR = dt.timedelta(hours=1)
HISTORY_DAYS = 35
BOUNDS = {
    "e2e": (0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0),
    "ttft": (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0),
    "itl": (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0),
    "queue": (0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0),
}


@dataclass(frozen=True)
class Profile:
    """An endpoint's traffic: requests per minute, tokens per request and median latencies (seconds)."""

    requests_per_minute: int
    prompt_per_request: int
    generation_per_request: int
    e2e: float
    ttft: float
    itl: float
    queue: float
    idle_hours: tuple[int, ...] = ()  # UTC hours of the day with no traffic (older than two hours)


PROFILES = {
    "chat-a": Profile(12, 600, 180, e2e=1.2, ttft=0.06, itl=0.02, queue=0.01, idle_hours=(3, 4)),
    "code-a": Profile(6, 1500, 400, e2e=3.5, ttft=0.2, itl=0.04, queue=0.05),
    "embed-b": Profile(30, 300, 1, e2e=0.35, ttft=0.02, itl=0.01, queue=0.005, idle_hours=(3,)),
}


@dataclass
class World:
    now: dt.datetime
    month: dt.date  # current statement-zone month
    last_month: dt.date
    team_a: Team
    team_b: Team
    users: dict[str, User]
    endpoints: dict[str, Endpoint]  # the three metered endpoints, by name
    pending: Endpoint
    failed_operation: Operation
    quota_request: QuotaRequest
    statements: list[Statement] = field(default_factory=list)
    refreshed: list[str] = field(default_factory=list)  # which optional refreshers ran

    def visible_endpoint_names(self, username: str) -> set[str]:
        """The metered endpoints this person may see (admins and finance: all)."""
        user = self.users[username]
        if user.is_platform_admin or user.is_finance:
            return set(self.endpoints)
        teams = set(Membership.objects.filter(user=user).values_list("team_id", flat=True))
        return {name for name, e in self.endpoints.items() if e.team_id in teams}

    def team_cost(self, team: Team, month: dt.date) -> Decimal:
        """Metered cost of a team in a statement-zone month (from the daily rollups), rounded to cents."""
        last = selectors.month_last_day(month)
        total = UsageDay.objects.filter(team=team, day__gte=month, day__lte=last).aggregate(s=Sum("price_seconds"))
        return round_money(exact_cost(total["s"] or 0), "USD")

    def endpoint_day_costs(self, endpoint: Endpoint) -> dict[dt.date, Decimal]:
        """Cost per statement-zone day of one endpoint, rounded to cents."""
        rows = UsageDay.objects.filter(endpoint=endpoint).values("day").annotate(s=Sum("price_seconds"))
        return {r["day"]: round_money(exact_cost(r["s"]), "USD") for r in rows}


# --- traffic ---------------------------------------------------------------------------------------
def _lognormal_cdf(x: float, median: float, sigma: float) -> float:
    return 0.5 * (1 + math.erf((math.log(x) - math.log(median)) / (sigma * math.sqrt(2))))


def _histogram(layout: int, name: str, count: float, median: float, sigma: float = 0.6) -> dict[str, Any]:
    """Bucket counts of `count` log-normal observations (rounded to whole requests, the rest in +Inf)."""
    bounds = BOUNDS[name]
    buckets: list[float] = []
    below = 0.0
    for bound in bounds:
        upto = round(count * _lognormal_cdf(bound, median, sigma))
        buckets.append(float(upto - below))
        below = upto
    buckets.append(float(count - below))
    mean = median * math.exp(sigma * sigma / 2)
    return {"l": layout, "b": buckets, "s": round(count * mean, 6), "c": float(count)}


def _traffic(profile: Profile, layouts: dict[str, int], *, minutes: int, age: dt.timedelta, wobble: int) -> dict:
    """Usage of `minutes` busy minutes of one endpoint, `age` before now; `wobble` varies it from row to row."""
    recent = age < dt.timedelta(hours=24)
    load = (1.0 if recent else 0.6) * (1 + (wobble % 5) / 10)
    slow = 1.0 if recent else 1.5
    requests = max(1, round(profile.requests_per_minute * minutes * load))
    generation = requests * profile.generation_per_request
    histograms = {
        "e2e": [_histogram(layouts["e2e"], "e2e", requests, profile.e2e * slow)],
        "ttft": [_histogram(layouts["ttft"], "ttft", requests, profile.ttft * slow)],
        "itl": [_histogram(layouts["itl"], "itl", max(generation - requests, 1), profile.itl * slow)],
        "queue": [_histogram(layouts["queue"], "queue", requests, profile.queue * slow)],
    }
    samples = 4 * minutes
    running = min(8.0, profile.requests_per_minute * load * profile.e2e * slow / 60 * 4)
    stop = requests * 3 // 4
    return {
        "requests": requests,
        "requests_by_reason": {"stop": stop, "length": requests - stop},
        "prompt_tokens": requests * profile.prompt_per_request,
        "generation_tokens": generation,
        "histograms": histograms,
        "running_sum": round(running * samples, 3),
        "waiting_sum": round(running / 4 * samples, 3),
        "kv_usage_sum": round(min(0.9, 0.1 + running / 10) * samples, 3),
        "gauge_samples": samples,
        "running_max": math.ceil(running) + 1.0,
        "waiting_max": math.ceil(running / 4) + 0.0,
        "kv_usage_max": round(min(0.95, 0.2 + running / 10), 3),
        "metric_replicas": 1,
        "scrapes": samples,
    }


# --- the world -------------------------------------------------------------------------------------
def _people(team_a: Team, team_b: Team) -> dict[str, User]:
    users = {
        "admin": UserFactory(username="admin", is_platform_admin=True),
        "finance": UserFactory(username="finance", is_finance=True),
        "lead-a": UserFactory(username="lead-a"),
        "member-a": UserFactory(username="member-a"),
        "lead-b": UserFactory(username="lead-b"),
    }
    MembershipFactory(user=users["lead-a"], team=team_a, role=Membership.Role.LEAD)
    MembershipFactory(user=users["member-a"], team=team_a, role=Membership.Role.MEMBER)
    MembershipFactory(user=users["lead-b"], team=team_b, role=Membership.Role.LEAD)
    return users  # type: ignore[return-value]  # factory_boy's stubs type a factory call as the factory


def _inventory(start: dt.datetime) -> tuple[GpuType, GpuType, Cluster]:
    h100 = GpuTypeFactory(sku="H100-80GB")
    l4 = GpuTypeFactory(sku="L4-24GB", memory_gib=24)
    GpuPriceFactory(gpu_type=h100, hourly_price=Decimal("2.5000"), effective_from=start - dt.timedelta(days=400))
    GpuPriceFactory(gpu_type=l4, hourly_price=Decimal("0.7100"), effective_from=start - dt.timedelta(days=400))
    cluster = ClusterFactory(name="lab-ray")
    ClusterGpuInventoryFactory(cluster=cluster, gpu_type=h100, count=16)
    ClusterGpuInventoryFactory(cluster=cluster, gpu_type=l4, count=8)
    return h100, l4, cluster  # type: ignore[return-value]


def _models() -> dict[str, CatalogModel]:
    scores = {
        "chat-a": ("chat-8b", "71.50", "MMLU-Pro"),
        "code-a": ("coder-32b", "64.00", "HumanEval"),
        "embed-b": ("embed-1b", "55.00", "MTEB"),
    }
    return {
        endpoint: cast(CatalogModel, CatalogModelFactory(name=name, quality_score=Decimal(score), quality_source=src))
        for endpoint, (name, score, src) in scores.items()
    }


def _hour_rows(
    endpoints: dict[str, Endpoint], layouts: dict[str, int], *, first: dt.datetime, last: dt.datetime, now: dt.datetime
) -> None:
    """Hourly rows for [first, last), priced as accrual would price them, as `generate.generate_hours` does."""
    batch: list[UsageHour] = []
    hour = first
    index = 0
    while hour < last:
        for name, endpoint in endpoints.items():
            profile = PROFILES[name]
            gpus = endpoint.observed_replicas * endpoint.gpus_per_replica
            seconds = gpus * 3600
            rate = Decimal("2.5000") if endpoint.gpu_type.sku.startswith("H100") else Decimal("0.7100")
            idle = hour.hour in profile.idle_hours
            traffic = {} if idle else _traffic(profile, layouts, minutes=60, age=now - hour, wobble=index)
            batch.append(
                UsageHour(
                    endpoint=endpoint,
                    team_id=endpoint.team_id,
                    hour=hour,
                    rate=rate,
                    currency="USD",
                    replicas=endpoint.observed_replicas,
                    gpus=gpus,
                    gpu_seconds=seconds,
                    price_seconds=rate * seconds,
                    idle_gpu_seconds=seconds if idle else 0,
                    minutes=60,
                    **traffic,
                )
            )
        hour += HOUR
        index += 1
    UsageHour.objects.bulk_create(batch, batch_size=2000)


def _minute_rows(
    endpoints: dict[str, Endpoint], layouts: dict[str, int], *, first: dt.datetime, now: dt.datetime
) -> None:
    """The real accrual for every closed minute since `first`, then each minute's traffic on top (as a scrape)."""
    minutes = []
    minute = first
    while minute < floor_minute(now):
        minutes.append(minute)
        minute += MINUTE
    accrue_minutes(minutes)
    usage = [
        UsageMinute(
            endpoint_id=endpoint.pk,
            team_id=endpoint.team_id,
            minute=m,
            **_traffic(PROFILES[name], layouts, minutes=1, age=now - m, wobble=i),
        )
        for name, endpoint in endpoints.items()
        for i, m in enumerate(minutes)
    ]
    UsageMinute.objects.bulk_create(
        usage, update_conflicts=True, unique_fields=["endpoint", "minute"], update_fields=USAGE_FIELDS
    )


def _refresh_summaries(world: World) -> None:
    """The precomputed tables other parts of issue 5 add, when they exist."""
    try:
        from apps.metering.monthly import refresh_team_months
    except ImportError:
        pass
    else:
        refresh_team_months()
        world.refreshed.append("refresh_team_months")
    try:
        from apps.dashboards.summaries import refresh_endpoint_summaries  # type: ignore[import-not-found]
    except ImportError:
        pass
    else:
        refresh_endpoint_summaries()
        world.refreshed.append("refresh_endpoint_summaries")


def seed_world(*, now: dt.datetime | None = None) -> World:
    """Build the world (see the module docstring). Needs a database whose writes other connections see."""
    now = now or timezone.now()
    today = local_day(now)
    start = day_bounds(today - dt.timedelta(days=HISTORY_DAYS))[0]
    team_a = cast(Team, TeamFactory(slug="team-a", name="Team A", cost_center="CC-1001"))
    team_b = cast(Team, TeamFactory(slug="team-b", name="Team B", cost_center="CC-2002"))
    users = _people(team_a, team_b)
    h100, l4, cluster = _inventory(start)
    GpuQuotaFactory(team=team_a, gpu_type=h100, limit=8)
    GpuQuotaFactory(team=team_b, gpu_type=l4, limit=4)
    GpuQuotaFactory(team=team_b, gpu_type=h100, limit=2)
    BudgetFactory(team=team_a, monthly_amount=Decimal("6000.00"), currency="USD")
    BudgetFactory(team=team_b, monthly_amount=Decimal("400.00"), currency="USD")
    models = _models()
    shapes = {"chat-a": (team_a, h100, 1), "code-a": (team_a, h100, 2), "embed-b": (team_b, l4, 1)}
    endpoints: dict[str, Endpoint] = {
        name: EndpointFactory(  # type: ignore[misc]
            team=team,
            name=name,
            model=models[name],
            cluster=cluster,
            gpu_type=gpu,
            gpus_per_replica=gpus,
            min_replicas=1,
            max_replicas=2,
            observed_replicas=1,
            requested_by=users["lead-b" if team == team_b else "lead-a"],
            state=Endpoint.State.READY,
            base_url=f"http://lab-ray.example.test/{team.slug}/{name}",
        )
        for name, (team, gpu, gpus) in shapes.items()
    }
    Endpoint.objects.filter(pk__in=[e.pk for e in endpoints.values()]).update(
        created_at=start - dt.timedelta(days=1), ready_at=start - dt.timedelta(days=1)
    )
    for endpoint in endpoints.values():
        endpoint.refresh_from_db()
    pending = cast(
        Endpoint,
        EndpointFactory(
            team=team_b,
            name="rerank-b",
            model=models["embed-b"],
            cluster=cluster,
            gpu_type=l4,
            state=Endpoint.State.PENDING_APPROVAL,
            requested_by=users["lead-b"],
        ),
    )
    failed = Operation.objects.create(
        cluster=cluster,
        endpoint=endpoints["code-a"],
        kind=Operation.Kind.UPDATE,
        state=Operation.State.FAILED,
        attempts=3,
        message="Ray Serve rejected the config: not enough L40S GPUs on the cluster.",
        started_at=now - dt.timedelta(hours=2, minutes=5),
        finished_at=now - dt.timedelta(hours=2),
    )
    quota_request = cast(
        QuotaRequest,
        QuotaRequestFactory(team=team_a, gpu_type=h100, requested_limit=12, requested_by=users["lead-a"]),
    )

    layouts_by_bounds = layout_ids(BOUNDS.values())
    layouts = {name: layouts_by_bounds[bounds] for name, bounds in BOUNDS.items()}
    first_minute = floor_hour(now) - HOUR
    _hour_rows(endpoints, layouts, first=start, last=first_minute, now=now)
    _minute_rows(endpoints, layouts, first=first_minute, now=now)
    rollup()  # the hours the accrual marked dirty, and their days
    day = today - dt.timedelta(days=HISTORY_DAYS)
    while day <= today:
        rollup_day(day)
        day += dt.timedelta(days=1)

    month = selectors.current_month(now)
    last_month = selectors.previous_month(month)
    actor = Actor.system()
    report = services.statements_generate(actor=actor, month=last_month, now=now)
    for statement in report.written:
        if statement.team_id == team_b.pk:
            services.statement_close(actor=actor, statement=statement)
    world = World(
        now=now,
        month=month,
        last_month=last_month,
        team_a=team_a,
        team_b=team_b,
        users=users,
        endpoints=endpoints,
        pending=pending,
        failed_operation=failed,
        quota_request=quota_request,
        statements=list(Statement.objects.filter(month=last_month).order_by("team__slug")),
    )
    _refresh_summaries(world)
    return world
