"""Refused sign-ins: each shows a clear page, writes a security audit event, and makes no user and no session.

The provider is real; a test that needs a bad token makes the provider issue one (`tamper_id_token` rewrites the
token response, re-signed with the provider's own key unless the test is about the key).
"""

from __future__ import annotations

import time
import urllib.parse
from typing import Any

import pytest
from django.contrib.sessions.models import Session
from django.test import Client
from django.urls import reverse

from apps.accounts.models import User
from apps.accounts.sso.views import EXPLANATIONS, PENDING_FLOWS
from apps.accounts.tests.oidc_provider import OTHER_TENANT, SsoWorld, other_key_pem, sign, sso_environment
from apps.audit.models import AuditEvent

SSO_LOGIN = reverse("accounts:sso_login")


@pytest.fixture
def sso(settings, monkeypatch, tmp_path, db):
    with sso_environment(settings, monkeypatch, tmp_path) as world:
        world.person("mallory", roles=["Pareto.Admin"])
        yield world


def start(client: Client, sso: SsoWorld, sub: str = "mallory") -> str:
    response = client.get(SSO_LOGIN)
    assert response.status_code == 302
    return sso.provider.authorize(response["Location"], sub)


def assert_refused(client: Client, response: Any, reason: str, *, users_before: int = 0) -> AuditEvent:
    """The clear page, the audit event with reason and source IP, no new user, nobody signed in, no session."""
    assert response.status_code == 400, response.content
    page = response.content.decode()
    assert "Sign-in with Microsoft failed" in page
    assert EXPLANATIONS[reason].replace("'", "&#x27;") in page
    event = AuditEvent.objects.filter(action="security.sso_rejected").latest("id")
    assert event.after["reason"] == reason, event.after
    assert event.source_ip == "127.0.0.1" and event.actor_id is None
    assert f"#{event.pk}" in page
    assert User.objects.count() == users_before
    assert "_auth_user_id" not in client.session
    assert not [s for s in Session.objects.all() if "_auth_user_id" in s.get_decoded()]
    assert client.get("/")["Location"].startswith(reverse("accounts:login"))
    return event


def resigned(change: dict[str, Any]):
    """A provider that issues the ID token with `change` applied, signed with its real key."""

    def tamper(claims: dict[str, Any], key: bytes) -> str:
        claims = {**claims, **change}
        return sign({k: v for k, v in claims.items() if v is not None}, key)

    return tamper


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"exp": int(time.time()) - 600, "iat": int(time.time()) - 4200}, "expired"),
        ({"nbf": int(time.time()) + 3600}, "not_yet_valid"),
        ({"aud": ["another-application"]}, "audience"),
        ({"iss": "https://login.microsoftonline.com/someone-else/v2.0"}, "issuer"),
        ({"tid": OTHER_TENANT}, "tenant"),
        ({"oid": None}, "malformed"),
    ],
    ids=["expired", "not-yet-valid", "wrong-audience", "wrong-issuer", "wrong-tenant", "no-oid"],
)
def test_a_token_with_bad_claims_is_refused(sso, change, reason):
    sso.provider.tamper_id_token = resigned(change)
    client = Client()
    event = assert_refused(client, client.get(start(client, sso)), reason)
    assert event.after["claims"]["preferred_username"] == "mallory@contoso.test"  # what the token claimed


def test_a_person_of_another_tenant_is_refused(sso):
    # No tampering: the provider really issues this person's tokens with another tenant id.
    sso.person("outsider", tid=OTHER_TENANT)
    client = Client()
    event = assert_refused(client, client.get(start(client, sso, "outsider")), "tenant")
    assert event.after["claims"]["tid"] == OTHER_TENANT


def test_a_token_signed_with_another_key_is_refused(sso):
    sso.provider.tamper_id_token = lambda claims, key: sign(claims, other_key_pem())
    client = Client()
    assert_refused(client, client.get(start(client, sso)), "signature")


def test_a_token_naming_an_unknown_key_refetches_the_keys_once_then_is_refused(sso):
    sso.provider.tamper_id_token = lambda claims, key: sign(claims, other_key_pem(), {"kid": "not-published"})
    client = Client()
    assert_refused(client, client.get(start(client, sso)), "unknown_key")
    assert sso.provider.jwks_requests == 2  # the first load, and one refresh for the unknown key id

    client = Client()
    assert_refused(client, client.get(start(client, sso)), "unknown_key")
    assert sso.provider.jwks_requests == 2  # refreshes are rate-limited: no fetch per forged token


def test_the_provider_key_with_its_key_id_is_accepted(sso):
    # The positive twin of the two tests above: same re-signing, the provider's own key and key id.
    kid = sso.provider.key_id()
    sso.provider.tamper_id_token = lambda claims, key: sign(claims, key, {"kid": kid})
    client = Client()
    response = client.get(start(client, sso))
    assert response.status_code == 302
    assert client.session["_auth_user_id"] == str(User.objects.get().pk)


def test_a_symmetric_algorithm_is_refused(sso):
    sso.provider.tamper_id_token = lambda claims, key: sign_hs256(claims)
    client = Client()
    assert_refused(client, client.get(start(client, sso)), "algorithm")


def sign_hs256(claims: dict[str, Any]) -> str:
    import jwt

    return jwt.encode(claims, "a-shared-secret-anyone-could-guess-32b", algorithm="HS256")


def test_a_token_without_the_nonce_is_refused(sso):
    sso.provider.tamper_id_token = resigned({"nonce": None})
    client = Client()
    event = assert_refused(client, client.get(start(client, sso)), "nonce")
    assert "nonce" in event.after["detail"]


def test_a_forged_state_is_refused(sso):
    client = Client()
    callback = start(client, sso)
    forged = callback.replace("state=", "state=forged")
    assert_refused(client, client.get(forged), "state")
    assert sso.provider.token_requests == 0  # the code was never even redeemed


def test_a_response_from_another_browser_is_refused(sso):
    # The attacker's own sign-in response, planted in the victim's browser (login CSRF).
    callback = start(Client(), sso)
    victim = Client()
    victim.get(SSO_LOGIN)  # the victim has a sign-in of their own pending
    assert_refused(victim, victim.get(callback), "state")


def test_a_replayed_callback_is_refused(sso):
    client = Client()
    callback = start(client, sso)
    assert client.get(callback).status_code == 302
    client.post(reverse("accounts:logout"))

    assert_refused(client, client.get(callback), "state", users_before=1)


def test_a_replayed_code_is_refused_by_the_provider(sso):
    # Even with the flow put back into the session, the provider redeems a code only once.
    client = Client()
    first = client.get(SSO_LOGIN)
    state = urllib.parse.parse_qs(urllib.parse.urlparse(first["Location"]).query)["state"][0]
    saved = dict(client.session[PENDING_FLOWS])
    callback = sso.provider.authorize(first["Location"], "mallory")
    assert client.get(callback).status_code == 302
    client.post(reverse("accounts:logout"))
    client.cookies.pop("sessionid")  # signed out: the browser dropped the cookie
    session = client.session
    session[PENDING_FLOWS] = {state: {**saved[state], "started": time.time()}}
    session.save()

    event = assert_refused(client, client.get(callback), "code_rejected", users_before=1)
    assert "invalid_grant" in event.after["detail"]
    assert sso.provider.token_requests == 2


def test_admins_find_refused_sign_ins_in_the_audit_log(sso, client_for, admin_user, lead_user):
    client = Client()
    callback = start(client, sso)
    client.get(callback.replace("state=", "state=forged"))

    page = client_for(admin_user).get(reverse("audit:list")).content.decode()
    assert "security.sso_rejected" in page and "sign-in refused: state" in page
    # A team lead sees their teams' events only; a refused sign-in belongs to no team.
    assert "security.sso_rejected" not in client_for(lead_user).get(reverse("audit:list")).content.decode()
