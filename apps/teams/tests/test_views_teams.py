"""Team pages: who sees what, forms that write through the services (with audit), bad input changes nothing."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.urls import reverse

from apps.accounts.tests.factories import UserFactory
from apps.audit.models import AuditEvent
from apps.audit.services import Actor
from apps.inventory.tests.factories import GpuTypeFactory
from apps.teams import services
from apps.teams.models import Budget, GpuQuota, Membership, Team
from apps.teams.tests.factories import BudgetFactory, GpuQuotaFactory, MembershipFactory, TeamFactory

ROLES = ("member_user", "lead_user", "other_lead", "finance_user", "admin_user")


def state() -> tuple:
    """Everything the team forms can change, to prove that bad input changed nothing."""
    return (
        list(Team.objects.order_by("pk").values_list("pk", "slug", "name", "cost_center")),
        list(Membership.objects.order_by("pk").values_list("pk", "team_id", "user_id", "role")),
        list(GpuQuota.objects.order_by("pk").values_list("pk", "team_id", "gpu_type_id", "limit")),
        list(Budget.objects.order_by("pk").values_list("pk", "monthly_amount", "currency", "alert_thresholds")),
        AuditEvent.objects.count(),
    )


def last_event() -> AuditEvent:
    event = AuditEvent.objects.order_by("-id").first()
    assert event is not None
    return event


def field_errors(response, field: str) -> list[str]:
    """The errors the page shows next to `field` (checks the HTML too, not only the context)."""
    form = response.context["form"]
    errors = form.errors.get(field, [])
    if errors:
        assert f'id="id_{field}_error"' in response.content.decode()
    return list(errors)


@pytest.fixture
def gpu(db):
    return GpuTypeFactory(sku="H100-80GB")


@pytest.fixture
def every_role(admin_user, finance_user, lead_user, member_user, other_lead):
    """All role fixtures exist, so each test sees the same rows."""


def urls_for(team: Team, membership: Membership, quota: GpuQuota) -> dict[str, str]:
    return {
        "list": reverse("teams:list"),
        "detail": reverse("teams:detail", args=[team.slug]),
        "create": reverse("teams:create"),
        "edit": reverse("teams:edit", args=[team.slug]),
        "delete": reverse("teams:delete", args=[team.slug]),
        "member_add": reverse("teams:member_add", args=[team.slug]),
        "member_role": reverse("teams:member_role", args=[team.slug, membership.pk]),
        "member_remove": reverse("teams:member_remove", args=[team.slug, membership.pk]),
        "quota_set": reverse("teams:quota_set", args=[team.slug]),
        "quota_delete": reverse("teams:quota_delete", args=[team.slug, quota.pk]),
        "budget_set": reverse("teams:budget_set", args=[team.slug]),
    }


# Expected GET status on team A's pages, by role. 404 means "this team does not exist for you".
EXPECTED = {
    #                 member lead  other-lead finance admin
    "list": (200, 200, 200, 200, 200),
    "detail": (200, 200, 404, 200, 200),
    "create": (403, 403, 403, 403, 200),
    "edit": (403, 403, 403, 403, 200),
    "delete": (403, 403, 403, 403, 200),
    "member_add": (403, 200, 404, 403, 200),
    "member_role": (403, 200, 404, 403, 200),
    "member_remove": (403, 200, 404, 403, 200),
    "quota_set": (403, 403, 403, 403, 200),
    "quota_delete": (403, 403, 403, 403, 200),
    "budget_set": (403, 403, 403, 200, 200),
}


@pytest.mark.parametrize("page", list(EXPECTED))
def test_every_team_page_status_by_role(request, client_for, every_role, team_a, member_user, gpu, page):
    membership = Membership.objects.get(user=member_user, team=team_a)
    url = urls_for(team_a, membership, GpuQuotaFactory(team=team_a, gpu_type=gpu))[page]
    anonymous = client_for(None).get(url)
    assert anonymous.status_code == 302
    assert anonymous["Location"].startswith(reverse("accounts:login") + "?next=")
    got = tuple(client_for(request.getfixturevalue(role)).get(url).status_code for role in ROLES)
    assert got == EXPECTED[page]


@pytest.mark.parametrize("page", ["delete", "member_remove", "quota_delete"])
def test_forbidden_posts_change_nothing(client_for, every_role, member_user, finance_user, team_a, gpu, page):
    membership = Membership.objects.get(user=member_user, team=team_a)
    url = urls_for(team_a, membership, GpuQuotaFactory(team=team_a, gpu_type=gpu))[page]
    before = state()
    assert client_for(member_user).post(url).status_code == 403
    assert client_for(finance_user).post(url).status_code == 403
    assert state() == before


def test_unknown_team_is_404_like_another_teams(client_for, lead_user, team_b):
    client = client_for(lead_user)
    other = client.get(reverse("teams:detail", args=[team_b.slug]))
    missing = client.get(reverse("teams:detail", args=["no-such-team"]))
    assert other.status_code == missing.status_code == 404
    assert b"Nothing here" in other.content
    assert b"Team B" not in other.content


# --- list -----------------------------------------------------------------------------------------------
def names_in(response) -> list[str]:
    return [team.slug for team in response.context["teams"]]


@pytest.mark.parametrize(
    ("role", "expected"),
    [
        ("member_user", ["team-a"]),
        ("lead_user", ["team-a"]),
        ("other_lead", ["team-b"]),
        ("finance_user", ["team-a", "team-b"]),
        ("admin_user", ["team-a", "team-b"]),
    ],
)
def test_team_list_is_scoped_by_role(request, client_for, team_a, team_b, role, expected):
    response = client_for(request.getfixturevalue(role)).get(reverse("teams:list"))
    assert names_in(response) == expected
    for slug in {"team-a", "team-b"} - set(expected):
        assert reverse("teams:detail", args=[slug]).encode() not in response.content


def test_team_list_shows_members_quotas_and_budget(client_for, finance_user, team_a, member_user, lead_user, gpu):
    GpuQuotaFactory(team=team_a, gpu_type=gpu, limit=6)
    BudgetFactory(team=team_a, monthly_amount=Decimal("12345.60"), currency="EUR")
    response = client_for(finance_user).get(reverse("teams:list"))
    html = response.content.decode()
    team = response.context["teams"][0]
    assert team.member_count == 2
    assert "6 \N{MULTIPLICATION SIGN} H100-80GB" in html
    assert "12,345.60 EUR/month" in html
    assert team_a.cost_center in html


def test_new_team_button_only_for_admin(client_for, admin_user, finance_user, team_a):
    create = reverse("teams:create").encode()
    assert create in client_for(admin_user).get(reverse("teams:list")).content
    assert create not in client_for(finance_user).get(reverse("teams:list")).content


def test_team_list_empty_states(client_for, admin_user, db):
    nobody = UserFactory(username="newcomer")
    assert b"You are not in any team yet" in client_for(nobody).get(reverse("teams:list")).content
    assert b"There are no teams yet" in client_for(admin_user).get(reverse("teams:list")).content


@pytest.mark.parametrize("rows", [3, 10])
def test_team_list_query_count_does_not_grow(client_for, admin_user, django_assert_max_num_queries, rows):
    gpus = [GpuTypeFactory(), GpuTypeFactory()]
    for _ in range(rows):
        team = TeamFactory()
        MembershipFactory.create_batch(2, team=team)
        for g in gpus:
            GpuQuotaFactory(team=team, gpu_type=g)
        BudgetFactory(team=team)
    client = client_for(admin_user)
    with django_assert_max_num_queries(10):  # 9 + the Approvals count in admins' navigation
        response = client.get(reverse("teams:list"))
    assert len(response.context["teams"]) == rows
    assert response.content.count(b"EUR/month") + response.content.count(b"USD/month") == rows


def test_team_list_paginates(client_for, admin_user):
    TeamFactory.create_batch(55)
    client = client_for(admin_user)
    assert len(client.get(reverse("teams:list")).context["teams"]) == 50
    second = client.get(reverse("teams:list") + "?page=2")
    assert len(second.context["teams"]) == 5
    assert b"Page 2 of 2" in second.content


# --- detail ---------------------------------------------------------------------------------------------
def test_detail_shows_members_with_source_quotas_budget(client_for, member_user, team_a, gpu):
    MembershipFactory(team=team_a, user=UserFactory(username="synced"), source=Membership.Source.IDENTITY_PROVIDER)
    GpuQuotaFactory(team=team_a, gpu_type=gpu, limit=4)
    BudgetFactory(team=team_a, monthly_amount=Decimal("900"), alert_thresholds=[50, 90, 100])
    response = client_for(member_user).get(reverse("teams:detail", args=["team-a"]))
    html = response.content.decode()
    members = {m.user.username: m.source for m in response.context["members"]}
    assert members == {"member-a": "manual", "synced": "idp"}
    assert 'title="From the identity provider">idp<' in html
    assert 'title="Added in the portal">manual<' in html
    assert "H100-80GB" in html and ">4<" in html
    assert "900.00 USD" in html
    assert "50%" in html and "90%" in html and "100%" in html
    # A member manages nothing.
    assert reverse("teams:member_add", args=["team-a"]) not in html
    assert reverse("teams:budget_set", args=["team-a"]) not in html
    assert reverse("teams:edit", args=["team-a"]) not in html


def test_detail_shows_each_role_only_its_actions(client_for, lead_user, finance_user, admin_user, team_a):
    add, budget, edit = (reverse(n, args=["team-a"]) for n in ("teams:member_add", "teams:budget_set", "teams:edit"))
    lead = client_for(lead_user).get(reverse("teams:detail", args=["team-a"])).content.decode()
    assert add in lead and budget not in lead and edit not in lead
    finance = client_for(finance_user).get(reverse("teams:detail", args=["team-a"])).content.decode()
    assert add not in finance and budget in finance and edit not in finance
    admin = client_for(admin_user).get(reverse("teams:detail", args=["team-a"])).content.decode()
    assert add in admin and budget in admin and edit in admin


def test_detail_audit_section_for_lead_finance_admin_not_member(
    request, client_for, admin_user, team_a, team_b, lead_user, member_user
):
    actor = Actor(user=admin_user)
    services.team_update(actor=actor, team=team_a, name="Team A renamed")
    services.team_update(actor=actor, team=team_b, name="Team B renamed")
    url = reverse("teams:detail", args=["team-a"])
    for role in ("lead_user", "finance_user", "admin_user"):
        response = client_for(request.getfixturevalue(role)).get(url)
        assert [e.action for e in response.context["events"]] == ["team.update"], role
        assert response.context["events"][0].team_id == team_a.pk
        assert b"Recent changes" in response.content
        assert b"Team A renamed" in response.content
    member = client_for(member_user).get(url)
    assert member.context["events"] == []
    assert b"Recent changes" not in member.content


def test_lead_who_is_only_member_elsewhere_sees_no_audit_there(client_for, lead_user, team_b, admin_user):
    MembershipFactory(user=lead_user, team=team_b, role=Membership.Role.MEMBER)
    services.team_update(actor=Actor(user=admin_user), team=team_b, name="Changed")
    response = client_for(lead_user).get(reverse("teams:detail", args=["team-b"]))
    assert response.status_code == 200
    assert response.context["events"] == []
    assert b"Recent changes" not in response.content


@pytest.mark.parametrize("rows", [3, 10])
def test_team_detail_query_count_does_not_grow(client_for, admin_user, team_a, django_assert_max_num_queries, rows):
    actor = Actor(user=admin_user)
    for i in range(rows):
        MembershipFactory(team=team_a)
        services.quota_set(actor=actor, team=team_a, gpu_type=GpuTypeFactory(), limit=i)
    client = client_for(admin_user)
    with django_assert_max_num_queries(11):  # 10 + the Approvals count in admins' navigation
        response = client.get(reverse("teams:detail", args=["team-a"]))
    assert len(response.context["members"]) == rows
    assert len(response.context["quotas"]) == rows
    assert len(response.context["events"]) == rows


# --- team create / edit / delete (admin) ----------------------------------------------------------------
def test_admin_creates_a_team(client_for, admin_user):
    response = client_for(admin_user).post(
        reverse("teams:create"), {"slug": "ml-research", "name": "ML Research", "cost_center": "CC-42"}
    )
    team = Team.objects.get(slug="ml-research")
    assert response.status_code == 302
    assert response["Location"] == reverse("teams:detail", args=["ml-research"])
    assert (team.name, team.cost_center) == ("ML Research", "CC-42")
    event = last_event()
    assert (event.action, event.actor_id, event.team_id, event.target_id) == (
        "team.create",
        admin_user.pk,
        team.pk,
        str(team.pk),
    )
    assert event.source_ip == "127.0.0.1"


@pytest.mark.parametrize(
    ("slug", "message"),
    [
        ("Bad_Slug", "DNS-1123"),
        ("-leading-dash", "DNS-1123"),
        ("x" * 41, "at most 40 characters"),
        ("team-a", "already exists"),
        ("", "cannot be blank"),
    ],
)
def test_bad_slug_is_shown_next_to_the_field_and_creates_nothing(client_for, admin_user, team_a, slug, message):
    before = state()
    response = client_for(admin_user).post(reverse("teams:create"), {"slug": slug, "name": "Some team"})
    assert response.status_code == 200
    assert any(message in e for e in field_errors(response, "slug")), response.context["form"].errors
    assert state() == before


def test_admin_edits_name_and_cost_center(client_for, admin_user, team_a):
    old_cost_center = team_a.cost_center
    response = client_for(admin_user).post(
        reverse("teams:edit", args=["team-a"]), {"name": "Applied ML", "cost_center": "CC-7"}
    )
    assert response.status_code == 302
    team_a.refresh_from_db()
    assert (team_a.slug, team_a.name, team_a.cost_center) == ("team-a", "Applied ML", "CC-7")
    event = last_event()
    assert event.action == "team.update"
    assert event.before == {"name": "Team A", "cost_center": old_cost_center}
    assert event.after == {"name": "Applied ML", "cost_center": "CC-7"}


def test_every_bad_field_is_reported_at_once(client_for, admin_user):
    before = state()
    response = client_for(admin_user).post(reverse("teams:create"), {"slug": "Bad Slug", "name": ""})
    assert any("DNS-1123" in e for e in field_errors(response, "slug"))
    assert field_errors(response, "name") == ["This field cannot be blank."]
    assert state() == before


def test_edit_with_blank_name_changes_nothing(client_for, admin_user, team_a):
    before = state()
    response = client_for(admin_user).post(reverse("teams:edit", args=["team-a"]), {"name": "", "cost_center": "X"})
    assert field_errors(response, "name") == ["This field cannot be blank."]
    assert state() == before


def test_delete_asks_first_then_deletes_on_post(client_for, admin_user, team_a, member_user):
    client = client_for(admin_user)
    url = reverse("teams:delete", args=["team-a"])
    confirm = client.get(url)
    assert confirm.status_code == 200
    assert b"Delete the team Team A (team-a)?" in confirm.content
    assert b'method="post"' in confirm.content
    assert Team.objects.filter(pk=team_a.pk).exists()
    response = client.post(url)
    assert response.status_code == 302 and response["Location"] == reverse("teams:list")
    assert not Team.objects.filter(pk=team_a.pk).exists()
    event = last_event()
    assert (event.action, event.target_id, event.before["slug"]) == ("team.delete", str(team_a.pk), "team-a")


# --- members (admin or that team's lead) --------------------------------------------------------------------
@pytest.mark.parametrize("role", ["lead_user", "admin_user"])
def test_lead_or_admin_adds_a_member(request, client_for, team_a, role):
    user = request.getfixturevalue(role)
    newcomer = UserFactory(username="newcomer")
    response = client_for(user).post(
        reverse("teams:member_add", args=["team-a"]), {"user": "newcomer", "role": "member"}
    )
    assert response.status_code == 302
    membership = Membership.objects.get(team=team_a, user=newcomer)
    assert (membership.role, membership.source) == ("member", "manual")
    event = last_event()
    assert (event.action, event.actor_id, event.team_id) == ("membership.add", user.pk, team_a.pk)


@pytest.mark.parametrize(
    ("username", "message"),
    [("member-a", "already in Team A"), ("nobody-here", "No active user named"), ("", "This field is required.")],
)
def test_bad_member_is_shown_next_to_the_field_and_adds_nothing(client_for, lead_user, member_user, username, message):
    before = state()
    response = client_for(lead_user).post(
        reverse("teams:member_add", args=["team-a"]), {"user": username, "role": "member"}
    )
    assert response.status_code == 200
    assert any(message in e for e in field_errors(response, "user")), response.context["form"].errors
    assert state() == before


def test_lead_changes_a_role(client_for, lead_user, member_user, team_a):
    membership = Membership.objects.get(user=member_user, team=team_a)
    response = client_for(lead_user).post(
        reverse("teams:member_role", args=["team-a", membership.pk]), {"role": "lead"}
    )
    assert response.status_code == 302
    membership.refresh_from_db()
    assert membership.role == "lead"
    event = last_event()
    assert (event.action, event.before, event.after) == ("membership.update", {"role": "member"}, {"role": "lead"})


def test_bad_role_changes_nothing(client_for, lead_user, member_user, team_a):
    membership = Membership.objects.get(user=member_user, team=team_a)
    before = state()
    response = client_for(lead_user).post(
        reverse("teams:member_role", args=["team-a", membership.pk]), {"role": "owner"}
    )
    assert response.status_code == 200
    assert "Select a valid choice" in field_errors(response, "role")[0]
    assert state() == before


def test_lead_removes_a_member_after_confirming(client_for, lead_user, member_user, team_a):
    membership = Membership.objects.get(user=member_user, team=team_a)
    url = reverse("teams:member_remove", args=["team-a", membership.pk])
    client = client_for(lead_user)
    assert b"Remove member-a from Team A?" in client.get(url).content
    assert Membership.objects.filter(pk=membership.pk).exists()
    response = client.post(url)
    assert response["Location"] == reverse("teams:detail", args=["team-a"])
    assert not Membership.objects.filter(pk=membership.pk).exists()
    event = last_event()
    assert (event.action, event.team_id, event.target_id) == ("membership.remove", team_a.pk, str(membership.pk))


def test_lead_removing_themselves_lands_on_the_team_list(client_for, lead_user, team_a):
    membership = Membership.objects.get(user=lead_user, team=team_a)
    client = client_for(lead_user)
    assert b"This is you" in client.get(reverse("teams:member_remove", args=["team-a", membership.pk])).content
    response = client.post(reverse("teams:member_remove", args=["team-a", membership.pk]))
    assert response["Location"] == reverse("teams:list")


def test_lead_cannot_reach_another_teams_membership_through_their_own_team(client_for, lead_user, other_lead, team_b):
    b_membership = Membership.objects.get(user=other_lead, team=team_b)
    before = state()
    client = client_for(lead_user)
    for name in ("teams:member_role", "teams:member_remove"):
        assert client.post(reverse(name, args=["team-a", b_membership.pk]), {"role": "member"}).status_code == 404
        assert client.post(reverse(name, args=["team-b", b_membership.pk]), {"role": "member"}).status_code == 404
    assert state() == before


# --- quotas (admin) -------------------------------------------------------------------------------------------
def test_admin_sets_then_changes_then_deletes_a_quota(client_for, admin_user, team_a, gpu):
    client = client_for(admin_user)
    url = reverse("teams:quota_set", args=["team-a"])
    assert client.post(url, {"gpu_type": gpu.pk, "limit": "4"}).status_code == 302
    quota = GpuQuota.objects.get(team=team_a, gpu_type=gpu)
    assert quota.limit == 4
    assert (last_event().action, last_event().after["limit"]) == ("quota.create", 4)
    # The change form starts from the current limit.
    assert client.get(url + f"?gpu_type={gpu.pk}").context["form"].initial == {"gpu_type": gpu, "limit": 4}
    assert client.post(url, {"gpu_type": gpu.pk, "limit": "6"}).status_code == 302
    quota.refresh_from_db()
    assert quota.limit == 6
    assert (last_event().action, last_event().before, last_event().after) == (
        "quota.update",
        {"limit": 4},
        {"limit": 6},
    )
    delete_url = reverse("teams:quota_delete", args=["team-a", quota.pk])
    assert b"Remove Team A&#x27;s quota of 6 x H100-80GB?" in client.get(delete_url).content
    assert client.post(delete_url).status_code == 302
    assert not GpuQuota.objects.filter(pk=quota.pk).exists()
    assert (last_event().action, last_event().team_id) == ("quota.delete", team_a.pk)


@pytest.mark.parametrize(
    ("data", "field", "message"),
    [
        ({"limit": "-1"}, "limit", "zero or more"),
        ({"limit": "abc"}, "limit", "Enter a whole number."),
        ({"limit": "1.5"}, "limit", "Enter a whole number."),
        ({"limit": "100001"}, "limit", "less than or equal to 100000"),
        ({"limit": "2", "gpu_type": "999999"}, "gpu_type", "Select a valid choice"),
    ],
)
def test_bad_quota_is_shown_next_to_the_field_and_changes_nothing(
    client_for, admin_user, team_a, gpu, data, field, message
):
    GpuQuotaFactory(team=team_a, gpu_type=gpu, limit=3)
    before = state()
    response = client_for(admin_user).post(reverse("teams:quota_set", args=["team-a"]), {"gpu_type": gpu.pk, **data})
    assert response.status_code == 200
    assert any(message in e for e in field_errors(response, field)), response.context["form"].errors
    assert state() == before


def test_quota_page_says_when_there_are_no_gpu_types(client_for, admin_user, team_a):
    assert (
        b"There are no GPU types yet" in client_for(admin_user).get(reverse("teams:quota_set", args=["team-a"])).content
    )


# --- budget (admin or finance) --------------------------------------------------------------------------------
@pytest.mark.parametrize("role", ["finance_user", "admin_user"])
def test_finance_or_admin_sets_a_budget(request, client_for, team_a, role):
    user = request.getfixturevalue(role)
    response = client_for(user).post(
        reverse("teams:budget_set", args=["team-a"]),
        {"monthly_amount": "12500.50", "currency": "eur", "alert_thresholds": "100, 50%, 80"},
    )
    assert response.status_code == 302
    budget = Budget.objects.get(team=team_a)
    assert (budget.monthly_amount, budget.currency, budget.alert_thresholds) == (
        Decimal("12500.50"),
        "EUR",
        [50, 80, 100],
    )
    event = last_event()
    assert (event.action, event.actor_id, event.team_id) == ("budget.create", user.pk, team_a.pk)


def test_budget_form_updates_an_existing_budget(client_for, finance_user, team_a):
    BudgetFactory(team=team_a, monthly_amount=Decimal("1000.00"), alert_thresholds=[80, 100])
    client = client_for(finance_user)
    url = reverse("teams:budget_set", args=["team-a"])
    assert client.get(url).context["form"].initial == {
        "monthly_amount": Decimal("1000.00"),
        "currency": "USD",
        "alert_thresholds": "80, 100",
    }
    client.post(url, {"monthly_amount": "1500", "currency": "USD", "alert_thresholds": "80, 100"})
    assert Budget.objects.get(team=team_a).monthly_amount == Decimal("1500.00")
    event = last_event()
    assert (event.action, event.before, event.after) == (
        "budget.update",
        {"monthly_amount": "1000.00"},
        {"monthly_amount": "1500.00"},
    )


@pytest.mark.parametrize(
    ("data", "field", "message"),
    [
        ({"monthly_amount": "lots"}, "monthly_amount", "Enter a number."),
        ({"monthly_amount": "-5"}, "monthly_amount", "greater than or equal to 0"),
        ({"monthly_amount": "1.234"}, "monthly_amount", "decimal places"),
        ({"currency": "dollars"}, "currency", "three-letter"),
        ({"alert_thresholds": "80, abc"}, "alert_thresholds", "whole numbers"),
        ({"alert_thresholds": "0"}, "alert_thresholds", "greater than or equal to 1"),
        ({"alert_thresholds": " , "}, "alert_thresholds", "at least one"),
    ],
)
def test_bad_budget_is_shown_next_to_the_field_and_changes_nothing(
    client_for, finance_user, team_a, data, field, message
):
    BudgetFactory(team=team_a, monthly_amount=Decimal("1000.00"))
    before = state()
    good = {"monthly_amount": "2000", "currency": "USD", "alert_thresholds": "80, 100"}
    response = client_for(finance_user).post(reverse("teams:budget_set", args=["team-a"]), {**good, **data})
    assert response.status_code == 200
    assert any(message in e for e in field_errors(response, field)), response.context["form"].errors
    assert state() == before
