"""Home page per role, the "no role yet" page, and the 403/404/500 pages."""

from __future__ import annotations

import pytest
from django.test import RequestFactory
from django.urls import reverse
from django.views.defaults import server_error

from apps.accounts.tests.factories import UserFactory
from apps.teams.models import Membership
from apps.teams.tests.factories import MembershipFactory, TeamFactory

HOME = reverse("core:home")


def test_anonymous_home_redirects_to_login(client_for, db):
    response = client_for(None).get(HOME)
    assert response.status_code == 302 and response["Location"].startswith(reverse("accounts:login"))


# --- no role yet ---------------------------------------------------------------------------------------------
def test_person_without_role_is_told_whom_to_ask(client_for, admin_user):
    UserFactory(username="root", email="root@example.test", is_superuser=True)
    UserFactory(username="gone-admin", email="gone@example.test", is_platform_admin=True, is_active=False)
    newcomer = UserFactory(username="newcomer")
    response = client_for(newcomer).get(HOME)
    html = " ".join(response.content.decode().split())
    assert response.status_code == 200
    assert "Ask a Pareto admin to add you to your team" in html
    assert [a.username for a in response.context["admins"]] == ["admin", "root"]
    assert 'href="mailto:admin@example.test"' in html and 'href="mailto:root@example.test"' in html
    assert "gone-admin" not in html
    # Nothing of the portal's data is shown.
    assert reverse("teams:list") not in html


def test_no_admin_at_all_says_how_to_make_one(client_for, db):
    response = client_for(UserFactory(username="first")).get(HOME)
    assert b"There is no Pareto admin yet" in response.content


# --- per role: the home page is the person's dashboard -------------------------------------------------------
@pytest.mark.parametrize(
    ("role", "template", "tab"),
    [
        ("member_user", "dashboards/team.html", "team:team-a"),
        ("lead_user", "dashboards/team.html", "team:team-a"),
        ("finance_user", "dashboards/finance.html", "finance"),
        ("admin_user", "dashboards/admin.html", "admin"),
    ],
)
def test_home_is_the_dashboard_of_the_persons_role(request, client_for, team_b, role, template, tab):
    response = client_for(request.getfixturevalue(role)).get(HOME)
    assert response.status_code == 200
    assert template in [t.name for t in response.templates]
    assert response.context["tab"] == tab
    assert b"You don&#x27;t have access to anything yet" not in response.content


def test_home_of_a_member_of_two_teams_is_the_first_team_with_tabs_for_both(client_for, member_user, team_b):
    MembershipFactory(user=member_user, team=TeamFactory(slug="aaa-first", name="First"))
    response = client_for(member_user).get(HOME)
    assert response.context["tab"] == "team:aaa-first"
    tabs = [t.key for t in response.context["tabs"]]
    assert tabs == ["team:aaa-first", "team:team-a", "frontier"]
    assert "team:team-b" not in tabs


def test_admin_who_is_also_finance_and_lead_gets_the_platform_dashboard_and_tabs_for_the_rest(
    client_for, admin_user, team_a
):
    admin_user.is_finance = True
    admin_user.save()
    MembershipFactory(user=admin_user, team=team_a, role=Membership.Role.LEAD)
    response = client_for(admin_user).get(HOME)
    assert response.context["tab"] == "admin"
    assert [t.key for t in response.context["tabs"]] == ["admin", "finance", "team:team-a", "frontier"]


# --- error pages -------------------------------------------------------------------------------------------
def test_404_page_says_what_happened_and_where_to_go(client_for, lead_user, team_b):
    response = client_for(lead_user).get(reverse("teams:detail", args=["team-b"]))
    assert response.status_code == 404
    assert b"Nothing here" in response.content
    assert f'href="{HOME}"'.encode() in response.content
    assert b"Traceback" not in response.content


def test_403_page_says_what_happened_and_where_to_go(client_for, member_user):
    response = client_for(member_user).get(reverse("audit:list"))
    assert response.status_code == 403
    assert b"You can't do that here" in response.content
    assert b"member-a" in response.content
    assert f'href="{HOME}"'.encode() in response.content


def test_500_page_renders_without_a_request_context(rf: RequestFactory):
    response = server_error(rf.get("/"))
    assert response.status_code == 500
    assert b"Something went wrong on our side" in response.content
    assert b'href="/"' in response.content
    assert b"Traceback" not in response.content
