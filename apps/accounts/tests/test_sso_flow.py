"""Sign-in with Microsoft, end to end: the real msal flow against a real OIDC provider over TLS (no internet).

The Django test client plays the browser; `Provider.authorize` plays the person on the provider's page.
"""

from __future__ import annotations

import urllib.parse

import pytest
import requests
from django.contrib.sessions.models import Session
from django.test import Client
from django.urls import reverse

from apps.accounts.models import GroupTeamMapping, User
from apps.accounts.services import user_set_roles
from apps.accounts.tests.oidc_provider import CLIENT_ID, TENANT, SsoWorld, sso_environment
from apps.audit.models import AuditEvent
from apps.audit.services import Actor
from apps.teams.models import Membership
from apps.teams.tests.factories import MembershipFactory, TeamFactory

G_PLATFORM = "0b7e2f4c-1d2e-4f3a-9b8c-7d6e5f4a3b21"  # platform team leads
G_DATA = "1c8f3a5d-2e3f-4a4b-8c9d-8e7f6a5b4c32"  # data team members
G_ML = "2d9a4b6e-3f4a-4b5c-9dae-9f8a7b6c5d43"  # ml team leads
G_UNMAPPED = "3eab5c7f-4a5b-4c6d-8ebf-a09b8c7d6e54"
LOGIN = reverse("accounts:login")
SSO_LOGIN = reverse("accounts:sso_login")


@pytest.fixture
def sso(settings, monkeypatch, tmp_path, db):
    with sso_environment(settings, monkeypatch, tmp_path) as world:
        yield world


@pytest.fixture
def teams(db):
    platform, data, ml = TeamFactory(slug="platform"), TeamFactory(slug="data"), TeamFactory(slug="ml")
    GroupTeamMapping.objects.create(group_id=G_PLATFORM, team=platform, role="lead", label="Platform leads")
    GroupTeamMapping.objects.create(group_id=G_DATA, team=data, role="member", label="Data")
    GroupTeamMapping.objects.create(group_id=G_ML, team=ml, role="lead", label="ML leads")
    return {"platform": platform, "data": data, "ml": ml}


def sign_in(client: Client, sso: SsoWorld, sub: str, *, next_url: str | None = None):
    """Click "Sign in with Microsoft", approve at the provider as `sub`, come back. Returns the callback response."""
    start = client.get(SSO_LOGIN, {"next": next_url} if next_url else {})
    assert start.status_code == 302, start.content
    callback = sso.provider.authorize(start["Location"], sub)
    assert callback.startswith("http://testserver/sso/callback/?"), callback
    return client.get(callback)


def memberships(user: User) -> dict[str, tuple[str, str]]:
    return {m.team.slug: (m.role, m.source) for m in Membership.objects.select_related("team").filter(user=user)}


def signed_in_user_id(client: Client) -> str | None:
    return client.session.get("_auth_user_id")


def test_first_sign_in_creates_the_user_with_roles_and_teams(sso, teams):
    claims = sso.person(
        "alice",
        name=None,
        given_name="Alice",
        family_name="Liddell",
        roles=["Pareto.Finance", "Something.Else"],
        groups=[G_PLATFORM, G_DATA.upper(), G_UNMAPPED],
    )
    client = Client()

    response = sign_in(client, sso, "alice")

    assert response.status_code == 302 and response["Location"] == "/"
    user = User.objects.get()
    assert (user.identity_issuer, user.identity_subject) == (TENANT, claims["oid"])
    assert (user.username, user.email) == ("alice@contoso.test", "alice@contoso.test")
    assert (user.first_name, user.last_name) == ("Alice", "Liddell")
    assert (user.is_finance, user.is_platform_admin) == (True, False)
    assert not user.has_usable_password()
    assert memberships(user) == {"platform": ("lead", "idp"), "data": ("member", "idp")}
    assert signed_in_user_id(client) == str(user.pk)
    home = client.get("/")
    assert home.status_code == 200 and b"You don't have access" not in home.content
    created = AuditEvent.objects.get(action="user.create_from_identity")
    assert (created.actor_id, created.source_ip) == (user.pk, "127.0.0.1")
    assert created.after["roles"] == ["finance"]
    assert AuditEvent.objects.filter(action="membership.add", actor=user).count() == 2


def test_second_sign_in_with_changed_groups_updates_memberships_and_keeps_manual_ones(sso, teams):
    sso.person("bob", roles=["Pareto.Admin"], groups=[G_PLATFORM, G_DATA])
    assert sign_in(Client(), sso, "bob").status_code == 302
    user = User.objects.get()
    # An admin adds Bob to the ML team by hand, as a member.
    MembershipFactory(user=user, team=teams["ml"], role="member", source=Membership.Source.MANUAL)

    sso.person("bob", name="Robert", email="robert@contoso.test", groups=[G_DATA, G_ML])  # no app role any more
    response = sign_in(Client(), sso, "bob")

    assert response.status_code == 302
    assert User.objects.count() == 1
    user.refresh_from_db()
    assert (user.email, user.first_name, user.is_platform_admin) == ("robert@contoso.test", "Robert", False)
    # Platform: the group is gone, so is the membership. ML: made by hand, stays as it was (not made lead).
    assert memberships(user) == {"data": ("member", "idp"), "ml": ("member", "manual")}
    removed = AuditEvent.objects.get(action="membership.remove")
    assert removed.before["role"] == "lead" and removed.team_id == teams["platform"].pk
    update = AuditEvent.objects.get(action="user.update_from_identity")
    assert update.after == {"email": "robert@contoso.test", "first_name": "Robert", "is_platform_admin": False}


def test_groups_overage_reads_the_groups_from_microsoft_graph(sso, teams):
    # More than 200 groups: Entra leaves `groups` out and points at Graph instead.
    sso.person(
        "carol",
        _claim_names={"groups": "src1"},
        _claim_sources={"src1": {"endpoint": "https://graph.windows.net/tenant/users/x/getMemberObjects"}},
    )
    sso.graph.groups["carol"] = [G_UNMAPPED, G_ML, "4fbc6d80-5b6c-4d7e-9fc0-b1ac9d8e7f65", G_DATA]

    response = sign_in(Client(), sso, "carol")

    assert response.status_code == 302
    user = User.objects.get()
    assert memberships(user) == {"ml": ("lead", "idp"), "data": ("member", "idp")}
    # Two pages of two groups, both with the person's access token (the Graph stand-in checked it).
    assert len(sso.graph.requests_seen) == 2
    assert "$skiptoken=2" in sso.graph.requests_seen[1]


def test_when_graph_fails_memberships_stay_and_the_page_says_so(sso, teams):
    sso.person("dave", groups=[G_DATA])
    assert sign_in(Client(), sso, "dave").status_code == 302
    sso.person("dave", roles=["Pareto.Finance"], hasgroups=True)  # overage, the implicit-flow way
    sso.graph.fail_with = 503

    client = Client()
    response = sign_in(client, sso, "dave")

    assert response.status_code == 302
    user = User.objects.get()
    assert memberships(user) == {"data": ("member", "idp")}  # kept, not wiped
    assert user.is_finance  # roles come from the token and were still refreshed
    page = client.get(response["Location"]).content.decode()
    assert "Your team memberships could not be updated" in page
    assert "Microsoft Graph answered HTTP 503" in page


def test_a_person_with_no_role_and_no_team_is_told_whom_to_ask(sso, admin_user):
    admin_user.email = "ops@contoso.test"
    admin_user.save()
    sso.person("erin", groups=[G_UNMAPPED])
    client = Client()

    response = sign_in(client, sso, "erin")

    page = client.get(response["Location"])
    assert page.status_code == 200
    text = page.content.decode()
    assert "You don&#x27;t have access to anything yet" in text or "You don't have access to anything yet" in text
    assert "ops@contoso.test" in text
    assert "no Pareto app role and none of your groups is mapped to a team" in text


def test_sign_in_rotates_the_session_and_sets_safe_cookies(sso, settings):
    settings.SESSION_COOKIE_SECURE = True
    settings.SESSION_COOKIE_AGE = 900  # PARETO_SESSION_IDLE_TIMEOUT
    sso.person("frank")
    client = Client()
    start = client.get(SSO_LOGIN)
    before = client.cookies["sessionid"].value
    response = client.get(sso.provider.authorize(start["Location"], "frank"))

    cookie = response.cookies["sessionid"]
    assert cookie.value != before
    assert not Session.objects.filter(session_key=before).exists()
    assert cookie["httponly"] and cookie["secure"] and cookie["samesite"] == "Lax"
    assert int(cookie["max-age"]) == 900


def test_sign_out_ends_the_session_and_goes_to_the_providers_end_session_page(sso):
    sso.person("grace")
    client = Client()
    sign_in(client, sso, "grace")

    response = client.post(reverse("accounts:logout"))

    assert response.status_code == 302
    target = urllib.parse.urlparse(response["Location"])
    assert f"{target.scheme}://{target.netloc}{target.path}" == f"{sso.provider.base_url}/oauth2/end_session"
    query = urllib.parse.parse_qs(target.query)
    assert query == {"post_logout_redirect_uri": ["http://testserver/login/"], "client_id": [CLIENT_ID]}
    assert signed_in_user_id(client) is None
    assert client.get("/")["Location"].startswith(LOGIN)
    # The provider's page offers to go back to Pareto's sign-in page.
    page = requests.get(response["Location"], timeout=10)
    assert page.status_code == 200 and "http://testserver/login/" in page.text


def test_a_local_sign_out_does_not_visit_the_provider(sso, member_user, client_for):
    response = client_for(member_user).post(reverse("accounts:logout"))
    assert response.status_code == 302 and response["Location"] == LOGIN


def test_a_deactivated_user_is_refused_and_nothing_about_them_changes(sso):
    sso.person("heidi", roles=["Pareto.Admin"])
    sign_in(Client(), sso, "heidi")
    user = User.objects.get()
    user_set_roles(actor=Actor.system(), user=user, is_active=False)
    sso.person("heidi", roles=["Pareto.Admin"], email="new@contoso.test")
    client = Client()

    response = sign_in(client, sso, "heidi")

    assert response.status_code == 403
    assert "Your Pareto account has been deactivated" in response.content.decode()
    user.refresh_from_db()
    assert (user.is_active, user.email) == (False, "heidi@contoso.test")
    assert signed_in_user_id(client) is None
    event = AuditEvent.objects.get(action="security.sso_rejected")
    assert event.after["reason"] == "user_deactivated" and event.source_ip == "127.0.0.1"


def test_a_rotated_provider_key_is_fetched_again(sso):
    sso.person("ivan")
    assert sign_in(Client(), sso, "ivan").status_code == 302
    assert sso.provider.jwks_requests == 1
    sso.provider.rotate_key()

    assert sign_in(Client(), sso, "ivan").status_code == 302

    assert sso.provider.jwks_requests == 2
    assert not AuditEvent.objects.filter(action="security.sso_rejected").exists()


def test_next_is_followed_only_within_pareto(sso):
    sso.person("judy")
    assert sign_in(Client(), sso, "judy", next_url="/teams/")["Location"] == "/teams/"
    assert sign_in(Client(), sso, "judy", next_url="https://evil.example/")["Location"] == "/"


def test_two_tabs_signing_in_at_once_both_work(sso):
    sso.person("kim")
    client = Client()
    first, second = client.get(SSO_LOGIN), client.get(SSO_LOGIN)
    first_callback = sso.provider.authorize(first["Location"], "kim")
    second_callback = sso.provider.authorize(second["Location"], "kim")
    assert client.get(second_callback).status_code == 302
    assert client.get(first_callback).status_code == 302
    assert signed_in_user_id(client) == str(User.objects.get().pk)


def test_cancelling_at_the_provider_shows_why_and_signs_nobody_in(sso):
    client = Client()
    start = client.get(SSO_LOGIN)
    callback = sso.provider.deny(start["Location"])
    # Entra sends the state back with an error too (RFC 6749, 4.1.2.1); the mock provider leaves it out.
    state = urllib.parse.parse_qs(urllib.parse.urlparse(start["Location"]).query)["state"][0]
    response = client.get(f"{callback}&state={state}")

    assert response.status_code == 400
    assert "did not sign you in" in response.content.decode()
    assert "access_denied" in response.content.decode()
    assert AuditEvent.objects.get(action="security.sso_rejected").after["reason"] == "provider_refused"
    assert not User.objects.exists()


def test_a_generic_oidc_provider_without_tenant_keys_users_on_issuer_and_subject(sso, settings):
    settings.PARETO_ENTRA_TENANT_ID = ""
    sso.person("lee", tid=None, oid=None)

    assert sign_in(Client(), sso, "lee").status_code == 302

    user = User.objects.get()
    assert (user.identity_issuer, user.identity_subject) == (sso.provider.issuer, "lee")


def test_an_unreachable_provider_gives_a_clear_page(db, settings):
    settings.PARETO_AUTH_MODES = ["local", "entra"]
    settings.PARETO_ENTRA_TENANT_ID = TENANT
    settings.PARETO_ENTRA_CLIENT_ID = CLIENT_ID
    settings.PARETO_ENTRA_CLIENT_SECRET = "x"
    settings.PARETO_ENTRA_OIDC_AUTHORITY = "https://127.0.0.1:9/tenant"  # discard port: nothing listens
    response = Client().get(SSO_LOGIN)
    assert response.status_code == 503
    assert "not available right now" in response.content.decode()


# --- the sign-in page follows PARETO_AUTH_MODES -----------------------------------------------------------------
def test_login_page_offers_what_is_enabled(db, settings, member_user):
    settings.PARETO_AUTH_MODES = ["local"]
    page = Client().get(LOGIN).content.decode()
    assert "Local accounts" in page and "Sign in with Microsoft" not in page
    assert Client().get(SSO_LOGIN).status_code == 404
    assert Client().get(reverse("accounts:sso_callback"), {"state": "x", "code": "y"}).status_code == 404

    settings.PARETO_AUTH_MODES = ["local", "entra"]
    page = Client().get(LOGIN).content.decode()
    assert "Local accounts" in page and f'href="{SSO_LOGIN}"' in page

    settings.PARETO_AUTH_MODES = ["entra"]
    page = Client().get(LOGIN, {"next": "/teams/"}).content.decode()
    assert "Local accounts" not in page and f'href="{SSO_LOGIN}?next=/teams/"' in page


def test_with_entra_only_a_local_password_signs_nobody_in(db, settings, member_user):
    settings.PARETO_AUTH_MODES = ["entra"]
    client = Client()
    response = client.post(LOGIN, {"username": "member-a", "password": "correct-horse-battery-staple"})
    assert response.status_code == 403
    assert "Sign-in with a local account is turned off" in response.content.decode()
    assert signed_in_user_id(client) is None
