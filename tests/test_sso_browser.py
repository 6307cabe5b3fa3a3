"""Sign in with Microsoft in a real browser: Chromium, Pareto's live server, the OIDC provider over TLS.

The same flow as apps/accounts/tests/test_sso_flow.py, once through what a person really uses: the button on the
sign-in page, the provider's page, the redirect back with the session cookie, and sign-out through the provider.
"""

from __future__ import annotations

import pytest
from playwright.sync_api import expect, sync_playwright

from apps.accounts.models import GroupTeamMapping, User
from apps.accounts.tests.oidc_provider import sso_environment
from apps.teams.models import Membership
from apps.teams.tests.factories import TeamFactory
from tests.browser import CHROMIUM, CHROMIUM_ARGS

GROUP = "6e1f2a3b-4c5d-4e6f-8a7b-9c0d1e2f3a4b"


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_sign_in_with_microsoft_and_out_again_in_a_browser(live_server, settings, monkeypatch, tmp_path):
    settings.SECURE_SSL_REDIRECT = False  # the live server speaks plain http
    settings.SESSION_COOKIE_SECURE = False
    settings.CSRF_COOKIE_SECURE = False
    team = TeamFactory(slug="research", name="Research")
    GroupTeamMapping.objects.create(group_id=GROUP, team=team, role="lead", label="Research leads")

    with sso_environment(settings, monkeypatch, tmp_path) as sso, sync_playwright() as p:
        sso.person("nina", name="Nina Simone", roles=["Pareto.Finance"], groups=[GROUP])
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            # The provider's certificate is self-signed; Pareto's side trusts it through REQUESTS_CA_BUNDLE.
            context = browser.new_context(ignore_https_errors=True)
            page = context.new_page()
            page.set_default_timeout(30_000)

            page.goto(f"{live_server.url}/login/?next=/teams/")
            expect(page.get_by_role("heading", name="Local accounts")).to_be_visible()
            page.get_by_role("link", name="Sign in with Microsoft").click()

            # The provider's own page: choose who signs in.
            page.wait_for_url(f"{sso.provider.base_url}/oauth2/authorize?*")
            page.locator("input[name=sub]").fill("nina")
            page.get_by_role("button", name="Authorize").click()

            page.wait_for_url(f"{live_server.url}/teams/")
            expect(page.locator(".whoami")).to_contain_text("nina@contoso.test")
            expect(page.locator(".whoami")).to_contain_text("finance")
            expect(page.get_by_role("link", name="Research")).to_be_visible()
            cookie = next(c for c in context.cookies() if c["name"] == "sessionid")
            assert cookie["httpOnly"] and cookie["sameSite"] == "Lax"
            page.screenshot(path=str(tmp_path / "signed-in.png"))

            page.get_by_role("button", name="Sign out").click()
            page.wait_for_url(f"{sso.provider.base_url}/oauth2/end_session?*")
            page.get_by_role("button", name="End session").click()  # the provider asks to confirm
            page.wait_for_url(f"{live_server.url}/login/")
            expect(page.get_by_role("link", name="Sign in with Microsoft")).to_be_visible()
            page.goto(f"{live_server.url}/teams/")
            page.wait_for_url(f"{live_server.url}/login/?next=/teams/")
        finally:
            browser.close()

    user = User.objects.get(username="nina@contoso.test")
    assert (user.first_name, user.is_finance, user.is_platform_admin) == ("Nina Simone", True, False)
    membership = Membership.objects.get(user=user)
    assert (membership.team, membership.role, membership.source) == (team, "lead", "idp")
