"""Team, membership, quota and budget services: every change is audited, bad input changes nothing."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, connections, models, transaction

from apps.accounts.tests.factories import UserFactory
from apps.audit.models import AuditEvent
from apps.audit.services import Actor
from apps.audit.tests.checks import no_event, refused
from apps.inventory.models import GpuType
from apps.inventory.tests.factories import GpuTypeFactory
from apps.teams import services
from apps.teams.models import Budget, GpuQuota, Membership, Team
from apps.teams.tests.factories import BudgetFactory, GpuQuotaFactory, MembershipFactory, TeamFactory

IP = "203.0.113.7"
TEAM_ROWS = (Team, Membership, GpuQuota, Budget)


@pytest.fixture
def actor(admin_user) -> Actor:
    return Actor(user=admin_user, source_ip=IP)


def assert_audited(
    action: str,
    actor: Actor,
    *,
    target: models.Model,
    team: Team | None,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
) -> AuditEvent:
    """The newest event is `action` by `actor`, scoped to `team`, whose before/after contain the given items."""
    event = AuditEvent.objects.order_by("-id").first()
    assert event is not None
    assert event.action == action
    assert event.actor_label == actor.label
    assert event.actor_id == (actor.user.pk if actor.user else None)
    assert event.source_ip == actor.source_ip
    assert event.team_id == (team.pk if team is not None else None)
    assert event.target_type == target._meta.label_lower
    assert event.target_id == str(target.pk)
    if before is not None:
        assert event.before is not None and before.items() <= event.before.items(), event.before
    if after is not None:
        assert event.after is not None and after.items() <= event.after.items(), event.after
    return event


# --- teams ---------------------------------------------------------------------------------------
def test_team_create_audits_scoped_to_the_new_team(actor):
    team = services.team_create(actor=actor, slug="ml-research", name="ML research", cost_center="CC-7")

    assert Team.objects.get(slug="ml-research").name == "ML research"
    assert_audited(
        "team.create",
        actor,
        target=team,
        team=team,
        after={"id": team.pk, "slug": "ml-research", "name": "ML research", "cost_center": "CC-7"},
    )


def test_team_create_by_the_system_is_labelled_system(db):
    team = services.team_create(actor=Actor.system(), slug="batch", name="Batch")

    event = assert_audited("team.create", Actor.system(), target=team, team=team)
    assert event.actor_label == "system"
    assert event.source_ip is None


@pytest.mark.parametrize(
    "slug",
    ["Team-A", "team_a", "-team", "team-", "team.a", "team a", "", "a" * 41],
    ids=["uppercase", "underscore", "leading-dash", "trailing-dash", "dot", "space", "empty", "41-chars"],
)
def test_team_create_refuses_a_slug_that_is_not_a_dns_label(actor, slug):
    with refused("slug", *TEAM_ROWS):
        services.team_create(actor=actor, slug=slug, name="A team")


def test_team_create_accepts_a_40_character_slug(actor):
    team = services.team_create(actor=actor, slug="a" * 40, name="Long")
    assert team.slug == "a" * 40


def test_team_create_refuses_a_duplicate_slug(actor, team_a):
    with refused("slug", *TEAM_ROWS) as info:
        services.team_create(actor=actor, slug="team-a", name="Another A")
    assert "already exists" in str(info.value.message_dict["slug"])


def test_team_create_refuses_a_missing_name(actor):
    with refused("name", *TEAM_ROWS):
        services.team_create(actor=actor, slug="nameless", name="")


def test_team_update_audits_only_what_changed(actor, team_a):
    updated = services.team_update(actor=actor, team=team_a, name="Team Alpha")

    assert Team.objects.get(pk=team_a.pk).name == "Team Alpha"
    assert updated.name == "Team Alpha"
    event = assert_audited(
        "team.update", actor, target=team_a, team=team_a, before={"name": "Team A"}, after={"name": "Team Alpha"}
    )
    assert set(event.after) == {"name"}


def test_team_update_to_the_same_values_writes_no_event(actor, team_a):
    with no_event():
        services.team_update(actor=actor, team=team_a, name=team_a.name, cost_center=team_a.cost_center)


def test_team_update_refuses_to_change_the_slug(actor, team_a):
    with refused("slug", *TEAM_ROWS):
        services.team_update(actor=actor, team=team_a, slug="renamed")
    assert Team.objects.get(pk=team_a.pk).slug == "team-a"


def test_team_update_refuses_a_blank_name_and_keeps_the_old_one(actor, team_a):
    with refused("name", *TEAM_ROWS):
        services.team_update(actor=actor, team=team_a, name="")
    assert Team.objects.get(pk=team_a.pk).name == "Team A"


def test_team_delete_audits_the_team_as_it_was(actor, team_a, member_user):
    pk = team_a.pk
    services.team_delete(actor=actor, team=team_a)

    assert not Team.objects.filter(pk=pk).exists()
    assert not Membership.objects.filter(team_id=pk).exists()
    event = AuditEvent.objects.order_by("-id").first()
    assert (event.action, event.actor_label, event.source_ip, event.team_id) == ("team.delete", "admin", IP, pk)
    assert (event.target_id, event.target_label) == (str(pk), "Team A")
    assert event.before["slug"] == "team-a"
    assert event.after is None


# --- races ----------------------------------------------------------------------------------------
def _in_thread(fn: Callable[[], Any]) -> tuple[threading.Thread, dict[str, Any]]:
    """Run `fn` on its own thread, hence its own database connection; keep its result or exception."""
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["value"] = fn()
        except Exception as exc:
            outcome["error"] = exc
        finally:
            connections.close_all()

    thread = threading.Thread(target=run)
    thread.start()
    return thread, outcome


def _wait_until_blocked_on_a_lock(pid: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    with connection.cursor() as cursor:
        while time.monotonic() < deadline:
            cursor.execute("SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s", [pid])
            row = cursor.fetchone()
            if row and row[0] == "Lock":
                return
            time.sleep(0.02)
    raise AssertionError("the second transaction never waited for the first one's insert")


def _overlap(first: Callable[[], Any], second: Callable[[], Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Run `first` in a transaction held open until `second`, on another connection, is waiting on a lock; then commit.

    Deterministic interleaving: `second` starts while `first`'s writes are uncommitted, exactly the window in which
    a check-then-insert service goes wrong.
    """
    done_first, release = threading.Event(), threading.Event()
    second_pid: dict[str, int] = {}

    def run_first() -> Any:
        with transaction.atomic():
            value = first()
            done_first.set()
            assert release.wait(10)
        return value

    def run_second() -> Any:
        assert done_first.wait(10)
        connection.ensure_connection()
        second_pid["pid"] = connection.connection.info.backend_pid
        return second()

    thread_a, a = _in_thread(run_first)
    thread_b, b = _in_thread(run_second)
    try:
        deadline = time.monotonic() + 10
        while "pid" not in second_pid and time.monotonic() < deadline and thread_b.is_alive():
            time.sleep(0.01)
        _wait_until_blocked_on_a_lock(second_pid["pid"])
    finally:
        release.set()
        thread_a.join(15)
        thread_b.join(15)
    assert "error" not in a, a
    return a, b


@pytest.mark.django_db(transaction=True)
def test_team_create_race_past_validation_gives_the_loser_a_slug_error():
    """B validates while A's insert is uncommitted, so B's own insert is what collides; B still gets a field error."""
    actor = Actor(user=None, source_ip=IP)

    _, b = _overlap(
        lambda: services.team_create(actor=actor, slug="race", name="First"),
        lambda: services.team_create(actor=actor, slug="race", name="Second"),
    )

    assert isinstance(b.get("error"), ValidationError), b
    assert "slug" in b["error"].message_dict
    assert isinstance(b["error"].__context__, IntegrityError)  # it was the insert that collided, not full_clean()
    assert list(Team.objects.filter(slug="race").values_list("name", flat=True)) == ["First"]
    assert AuditEvent.objects.filter(action="team.create").count() == 1


@pytest.mark.django_db(transaction=True)
def test_membership_add_race_gives_the_loser_a_user_error():
    actor = Actor(user=None, source_ip=IP)
    team, user = TeamFactory(slug="race"), UserFactory(username="racer")

    _, b = _overlap(
        lambda: services.membership_add(actor=actor, team=team, user=user, role="lead"),
        lambda: services.membership_add(actor=actor, team=team, user=user, role="member"),
    )

    assert isinstance(b.get("error"), ValidationError), b
    assert "user" in b["error"].message_dict
    assert list(Membership.objects.filter(team=team).values_list("role", flat=True)) == ["lead"]
    assert AuditEvent.objects.filter(action="membership.add").count() == 1


@pytest.mark.django_db(transaction=True)
def test_quota_set_race_turns_the_second_create_into_an_update():
    actor = Actor(user=None, source_ip=IP)
    team, gpu = TeamFactory(slug="race"), GpuTypeFactory()

    _, b = _overlap(
        lambda: services.quota_set(actor=actor, team=team, gpu_type=gpu, limit=4),
        lambda: services.quota_set(actor=actor, team=team, gpu_type=gpu, limit=6),
    )

    assert "error" not in b, b
    assert list(GpuQuota.objects.filter(team=team).values_list("limit", flat=True)) == [6]
    events = list(AuditEvent.objects.order_by("id"))
    assert [e.action for e in events] == ["quota.create", "quota.update"]
    assert events[0].after["limit"] == 4
    assert (events[1].before, events[1].after) == ({"limit": 4}, {"limit": 6})


@pytest.mark.django_db(transaction=True)
def test_budget_set_race_turns_the_second_create_into_an_update():
    actor = Actor(user=None, source_ip=IP)
    team = TeamFactory(slug="race")

    _, b = _overlap(
        lambda: services.budget_set(actor=actor, team=team, monthly_amount=Decimal("100")),
        lambda: services.budget_set(actor=actor, team=team, monthly_amount=Decimal("250")),
    )

    assert "error" not in b, b
    assert Budget.objects.get(team=team).monthly_amount == Decimal("250.00")
    assert list(AuditEvent.objects.order_by("id").values_list("action", flat=True)) == [
        "budget.create",
        "budget.update",
    ]


@pytest.mark.django_db(transaction=True)
def test_team_create_started_together_one_wins_the_other_gets_a_slug_error():
    actor = Actor(user=None, source_ip=IP)
    barrier = threading.Barrier(2, timeout=10)

    def create(name: str) -> Callable[[], Team]:
        def run() -> Team:
            connection.ensure_connection()
            barrier.wait()
            return services.team_create(actor=actor, slug="together", name=name)

        return run

    runs = [_in_thread(create(name)) for name in ("One", "Two")]
    for thread, _ in runs:
        thread.join(15)

    outcomes = [outcome for _, outcome in runs]
    winners = [o["value"] for o in outcomes if "value" in o]
    errors = [o["error"] for o in outcomes if "error" in o]
    assert len(winners) == 1 and len(errors) == 1, outcomes
    assert isinstance(errors[0], ValidationError) and "slug" in errors[0].message_dict
    assert Team.objects.filter(slug="together").count() == 1
    assert AuditEvent.objects.filter(action="team.create").count() == 1


# --- memberships ---------------------------------------------------------------------------------
def test_membership_add_audits_in_the_team(actor, team_a):
    user = UserFactory(username="newbie")
    membership = services.membership_add(actor=actor, team=team_a, user=user, role=Membership.Role.LEAD)

    assert Membership.objects.get(team=team_a, user=user).role == "lead"
    assert_audited(
        "membership.add",
        actor,
        target=membership,
        team=team_a,
        after={"user_id": user.pk, "team_id": team_a.pk, "role": "lead", "source": "manual"},
    )


def test_membership_add_refuses_a_duplicate(actor, team_a, member_user):
    with refused("user", *TEAM_ROWS) as info:
        services.membership_add(actor=actor, team=team_a, user=member_user, role=Membership.Role.LEAD)
    assert "member-a" in str(info.value.message_dict["user"])
    assert Membership.objects.get(team=team_a, user=member_user).role == "member"


def test_membership_add_refuses_an_unknown_role(actor, team_a):
    user = UserFactory(username="someone")
    with refused("role", *TEAM_ROWS):
        services.membership_add(actor=actor, team=team_a, user=user, role="owner")


def test_membership_set_role_audits_before_and_after(actor, team_a, member_user):
    membership = Membership.objects.get(team=team_a, user=member_user)
    services.membership_set_role(actor=actor, membership=membership, role=Membership.Role.LEAD)

    assert Membership.objects.get(pk=membership.pk).role == "lead"
    assert_audited(
        "membership.update", actor, target=membership, team=team_a, before={"role": "member"}, after={"role": "lead"}
    )


def test_membership_set_role_to_the_same_role_writes_no_event(actor, team_a, member_user):
    membership = Membership.objects.get(team=team_a, user=member_user)
    with no_event():
        services.membership_set_role(actor=actor, membership=membership, role="member")


def test_membership_set_role_refuses_an_unknown_role(actor, team_a, member_user):
    membership = Membership.objects.get(team=team_a, user=member_user)
    with refused("role", *TEAM_ROWS):
        services.membership_set_role(actor=actor, membership=membership, role="boss")
    assert Membership.objects.get(pk=membership.pk).role == "member"


def test_membership_remove_audits_the_membership(actor, team_a, member_user):
    membership = Membership.objects.get(team=team_a, user=member_user)
    pk = membership.pk
    services.membership_remove(actor=actor, membership=membership)

    assert not Membership.objects.filter(pk=pk).exists()
    event = AuditEvent.objects.order_by("-id").first()
    assert (event.action, event.actor_label, event.source_ip, event.team_id) == (
        "membership.remove",
        "admin",
        IP,
        team_a.pk,
    )
    assert event.target_id == str(pk)
    assert event.before == {
        "id": pk,
        "user_id": member_user.pk,
        "team_id": team_a.pk,
        "role": "member",
        "source": "manual",
        "created_at": membership.created_at.isoformat(),
    }


# --- quotas --------------------------------------------------------------------------------------
def test_quota_set_creates_a_quota_and_audits_it(actor, team_a):
    gpu = GpuTypeFactory(sku="H100-80GB")
    quota = services.quota_set(actor=actor, team=team_a, gpu_type=gpu, limit=8)

    assert GpuQuota.objects.get(team=team_a, gpu_type=gpu).limit == 8
    assert_audited(
        "quota.create",
        actor,
        target=quota,
        team=team_a,
        after={"team_id": team_a.pk, "gpu_type_id": gpu.pk, "limit": 8},
    )


def test_quota_set_updates_an_existing_quota_and_audits_the_change(actor, team_a):
    quota = GpuQuotaFactory(team=team_a, limit=8)
    services.quota_set(actor=actor, team=team_a, gpu_type=quota.gpu_type, limit=16)

    assert GpuQuota.objects.get(pk=quota.pk).limit == 16
    assert GpuQuota.objects.count() == 1
    event = assert_audited("quota.update", actor, target=quota, team=team_a, before={"limit": 8}, after={"limit": 16})
    assert set(event.after) == {"limit"}


@pytest.mark.parametrize("same", [8, "8", " 8 "])
def test_quota_set_to_the_same_limit_writes_no_event(actor, team_a, same):
    quota = GpuQuotaFactory(team=team_a, limit=8)
    with no_event():
        services.quota_set(actor=actor, team=team_a, gpu_type=quota.gpu_type, limit=same)


@pytest.mark.parametrize("limit", [-1, "-1", "abc", "", None, 1.5, "2.5", True, 100_001])
def test_quota_set_refuses_a_limit_that_is_not_a_whole_number_in_range(actor, team_a, limit):
    quota = GpuQuotaFactory(team=team_a, limit=8)
    with refused("limit", *TEAM_ROWS):
        services.quota_set(actor=actor, team=team_a, gpu_type=quota.gpu_type, limit=limit)
    assert GpuQuota.objects.get(pk=quota.pk).limit == 8


def test_quota_set_refuses_a_new_negative_quota(actor, team_a):
    gpu = GpuTypeFactory()
    with refused("limit", *TEAM_ROWS):
        services.quota_set(actor=actor, team=team_a, gpu_type=gpu, limit=-4)


def test_quota_set_refuses_a_gpu_type_deleted_meanwhile(actor, team_a):
    gpu = GpuTypeFactory()
    GpuType.objects.filter(pk=gpu.pk).delete()  # someone else deleted it; our instance is stale
    with refused("gpu_type", *TEAM_ROWS, GpuType):
        services.quota_set(actor=actor, team=team_a, gpu_type=gpu, limit=4)


def test_quota_set_refuses_a_gpu_type_that_was_never_saved(actor, team_a):
    with refused("gpu_type", *TEAM_ROWS, GpuType):
        services.quota_set(actor=actor, team=team_a, gpu_type=GpuType(sku="NOPE", memory_gib=1), limit=4)


def test_quota_delete_audits_the_quota(actor, team_a):
    quota = GpuQuotaFactory(team=team_a, limit=8)
    pk = quota.pk
    services.quota_delete(actor=actor, quota=quota)

    assert not GpuQuota.objects.filter(pk=pk).exists()
    event = AuditEvent.objects.order_by("-id").first()
    assert (event.action, event.actor_label, event.source_ip, event.team_id) == ("quota.delete", "admin", IP, team_a.pk)
    assert event.before["limit"] == 8 and event.before["gpu_type_id"] == quota.gpu_type_id


# --- budgets -------------------------------------------------------------------------------------
def test_budget_set_creates_a_budget_and_audits_it(actor, team_a):
    budget = services.budget_set(
        actor=actor, team=team_a, monthly_amount=Decimal("5000"), currency="EUR", alert_thresholds=[100, 50, 80, 80]
    )

    stored = Budget.objects.get(team=team_a)
    assert (stored.monthly_amount, stored.currency, stored.alert_thresholds) == (
        Decimal("5000.00"),
        "EUR",
        [50, 80, 100],
    )
    assert_audited(
        "budget.create",
        actor,
        target=budget,
        team=team_a,
        after={"monthly_amount": "5000.00", "currency": "EUR", "alert_thresholds": [50, 80, 100]},
    )


def test_budget_set_without_thresholds_keeps_the_default(actor, team_a):
    services.budget_set(actor=actor, team=team_a, monthly_amount=Decimal("10"))
    assert Budget.objects.get(team=team_a).alert_thresholds == [80, 100]


def test_budget_set_updates_and_audits_only_what_changed(actor, team_a):
    budget = BudgetFactory(team=team_a, monthly_amount=Decimal("10000.00"), currency="USD")
    services.budget_set(actor=actor, team=team_a, monthly_amount=Decimal("12500.50"), currency="USD")

    assert Budget.objects.get(pk=budget.pk).monthly_amount == Decimal("12500.50")
    event = assert_audited(
        "budget.update",
        actor,
        target=budget,
        team=team_a,
        before={"monthly_amount": "10000.00"},
        after={"monthly_amount": "12500.50"},
    )
    assert set(event.after) == {"monthly_amount"}


@pytest.mark.parametrize("amount", [Decimal("10000"), Decimal("10000.00"), "10000", 10000])
def test_budget_set_to_the_same_amount_writes_no_event(actor, team_a, amount):
    BudgetFactory(team=team_a, monthly_amount=Decimal("10000.00"), currency="USD", alert_thresholds=[80, 100])
    with no_event():
        services.budget_set(actor=actor, team=team_a, monthly_amount=amount, currency="USD", alert_thresholds=[100, 80])


@pytest.mark.parametrize("currency", ["usd", "EURO", "US", "", "U$D"])
def test_budget_set_refuses_a_currency_that_is_not_iso_4217(actor, team_a, currency):
    with refused("currency", *TEAM_ROWS):
        services.budget_set(actor=actor, team=team_a, monthly_amount=Decimal("10"), currency=currency)


@pytest.mark.parametrize("amount", [Decimal("-0.01"), "-5", "abc", "", None, Decimal("1.234")])
def test_budget_set_refuses_a_bad_amount(actor, team_a, amount):
    with refused("monthly_amount", *TEAM_ROWS):
        services.budget_set(actor=actor, team=team_a, monthly_amount=amount)


@pytest.mark.parametrize("thresholds", [[0], [80, 1001], [-5], ["abc"], [80.5], "80", 80, []])
def test_budget_set_refuses_thresholds_out_of_range(actor, team_a, thresholds):
    with refused("alert_thresholds", *TEAM_ROWS):
        services.budget_set(actor=actor, team=team_a, monthly_amount=Decimal("10"), alert_thresholds=thresholds)


def test_budget_set_refuses_a_bad_update_and_keeps_the_budget(actor, team_a):
    budget = BudgetFactory(team=team_a, monthly_amount=Decimal("10000.00"), currency="USD")
    with refused("currency", *TEAM_ROWS):
        services.budget_set(actor=actor, team=team_a, monthly_amount=Decimal("1"), currency="dollars")
    stored = Budget.objects.get(pk=budget.pk)
    assert (stored.monthly_amount, stored.currency) == (Decimal("10000.00"), "USD")


def test_quota_set_in_one_team_leaves_another_team_alone(actor, team_a, team_b):
    """A change in team A leaves team B's rows and scope alone."""
    other = MembershipFactory(team=team_b)
    quota_b = GpuQuotaFactory(team=team_b, limit=3)
    services.quota_set(actor=actor, team=team_a, gpu_type=quota_b.gpu_type, limit=5)

    assert GpuQuota.objects.get(pk=quota_b.pk).limit == 3
    assert Membership.objects.filter(pk=other.pk).exists()
    assert AuditEvent.objects.get(action="quota.create").team_id == team_a.pk


def test_budget_set_without_currency_keeps_the_budgets_own(actor, team_a):
    services.budget_set(actor=actor, team=team_a, monthly_amount=Decimal("500"), currency="EUR")
    budget = services.budget_set(actor=actor, team=team_a, monthly_amount=Decimal("700"))
    budget.refresh_from_db()
    assert (budget.monthly_amount, budget.currency) == (Decimal("700.00"), "EUR")


def test_budget_set_new_budget_defaults_to_usd(actor, team_a):
    assert services.budget_set(actor=actor, team=team_a, monthly_amount=Decimal("1")).currency == "USD"
