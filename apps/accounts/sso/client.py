"""The one module that talks to the identity provider through msal (Microsoft Entra ID, or a generic OIDC provider).

msal runs the authorization code flow with PKCE: `flow_begin` makes the flow (state, nonce, code verifier) that the
caller keeps in the server-side session, and `flow_redeem` checks the state and the nonce and redeems the code.
msal does NOT verify the ID token it returns: `tokens.verify_id_token` does, with the keys and issuer from
`discovery`.

Each call builds its own `ConfidentialClientApplication`, so no token cache is ever shared between people; only
msal's `http_cache` (discovery documents, never tokens) is shared. HTTP goes through one `requests` session that
honours the environment (`REQUESTS_CA_BUNDLE`, proxies).
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
import warnings
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import msal
import requests

from .config import SsoConfig

log = logging.getLogger(__name__)

# Shared by every msal app of this process: discovery documents only (msal keeps no tokens in it).
HTTP_CACHE: dict[Any, Any] = {}
DISCOVERY_MAX_AGE_SECONDS = 3600
_session = requests.Session()
_discovery: dict[str, tuple[float, dict[str, Any]]] = {}
_discovery_lock = threading.Lock()


class SsoUnavailable(Exception):
    """The provider cannot be reached, answers nonsense, or Pareto is misconfigured: nothing was refused."""


class FlowRejected(Exception):
    """The provider's answer to one sign-in is refused. `reason` is a short code for the audit log."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class Tokens:
    id_token: str  # not verified yet
    access_token: str  # for Microsoft Graph (User.Read); "" if the provider gave none


def http_session() -> requests.Session:
    return _session


def reset_caches() -> None:
    """Forget discovery documents (tests start a new provider per test)."""
    with _discovery_lock:
        _discovery.clear()
    HTTP_CACHE.clear()


def get_json(url: str, *, timeout: float) -> dict[str, Any]:
    try:
        response = _session.get(url, timeout=timeout)
    except requests.RequestException as exc:
        raise SsoUnavailable(f"{url} could not be reached: {exc}") from exc
    if response.status_code != 200:
        raise SsoUnavailable(f"{url} answered HTTP {response.status_code}")
    try:
        body = response.json()
    except ValueError as exc:
        raise SsoUnavailable(f"{url} did not answer JSON") from exc
    if not isinstance(body, dict):
        raise SsoUnavailable(f"{url} did not answer a JSON object")
    return body


def discovery(config: SsoConfig) -> dict[str, Any]:
    """The provider's OpenID configuration (issuer, jwks_uri, end_session_endpoint...), cached for an hour."""
    url = config.discovery_url
    now = time.monotonic()
    with _discovery_lock:
        cached = _discovery.get(url)
    if cached is not None and now - cached[0] < DISCOVERY_MAX_AGE_SECONDS:
        return cached[1]
    document = get_json(url, timeout=config.http_timeout)
    required = ("issuer", "jwks_uri", "authorization_endpoint", "token_endpoint")
    missing = [key for key in required if not document.get(key)]
    if missing:
        raise SsoUnavailable(f"{url} lacks {', '.join(missing)}")
    with _discovery_lock:
        _discovery[url] = (now, document)
    return document


def expected_issuer(config: SsoConfig, document: dict[str, Any]) -> str:
    # Entra's multi-tenant documents say {tenantid}; Pareto serves one tenant, so that is the one.
    return str(document["issuer"]).replace("{tenantid}", config.tenant_id)


def _app(config: SsoConfig) -> msal.ConfidentialClientApplication:
    try:
        return msal.ConfidentialClientApplication(
            config.client_id,
            client_credential=config.client_credential(),
            authority=None if config.oidc_authority else config.authority,
            oidc_authority=config.oidc_authority or None,
            http_client=_session,
            http_cache=HTTP_CACHE,
            timeout=config.http_timeout,
        )
    except (ValueError, OSError, requests.RequestException) as exc:
        # Discovery failed, the issuer does not match the authority, or the certificate cannot be read.
        raise SsoUnavailable(f"cannot set up the sign-in client: {exc}") from exc


def flow_begin(config: SsoConfig, *, redirect_uri: str) -> dict[str, Any]:
    """A new authorization code flow (state, nonce, PKCE verifier, `auth_uri` to send the browser to)."""
    app = _app(config)
    with warnings.catch_warnings():
        # msal recommends response_mode=form_post. Pareto keeps the query mode on purpose: the provider's POST
        # would be cross-site, and the SameSite=Lax session cookie (which holds this flow) is not sent with it.
        # The code is single-use, bound to this flow by PKCE, and redeemed server-side with the client credential.
        warnings.filterwarnings("ignore", message="response_mode='form_post'", category=UserWarning)
        try:
            flow: dict[str, Any] = app.initiate_auth_code_flow(list(config.scopes), redirect_uri=redirect_uri)
        except ValueError as exc:
            raise SsoUnavailable(f"cannot start the sign-in: {exc}") from exc
    return flow


def expected_nonce(flow: dict[str, Any]) -> str:
    # msal sends the SHA-256 of the flow's nonce (hex) and expects that value back in the ID token.
    return hashlib.sha256(str(flow.get("nonce", "")).encode("ascii")).hexdigest()


def flow_redeem(config: SsoConfig, *, flow: dict[str, Any], auth_response: dict[str, str]) -> Tokens:
    """Check state and nonce (msal) and redeem the code. Raises FlowRejected or SsoUnavailable."""
    app = _app(config)
    try:
        result = app.acquire_token_by_auth_code_flow(dict(flow), auth_response)
    except ValueError as exc:  # msal: state missing or different, or neither a code nor an error
        raise FlowRejected("state" if "state" in str(exc) else "malformed", str(exc)) from exc
    except RuntimeError as exc:  # msal: the ID token's nonce is not this flow's
        raise FlowRejected("nonce", str(exc)) from exc
    except requests.RequestException as exc:
        raise SsoUnavailable(f"the token endpoint could not be reached: {exc}") from exc
    if "error" in result:
        error = str(result.get("error"))
        detail = f"{error}: {result.get('error_description') or ''}".strip(": ")
        if error == "invalid_grant":
            raise FlowRejected("code_rejected", detail)  # used before (replayed), expired, or not for this client
        if error in ("access_denied", "consent_required", "interaction_required", "login_required"):
            raise FlowRejected("provider_refused", detail)
        raise FlowRejected("provider_error", detail)
    id_token = result.get("id_token")
    if not isinstance(id_token, str) or not id_token:
        raise FlowRejected("malformed", "the token response has no ID token")
    return Tokens(id_token=id_token, access_token=str(result.get("access_token") or ""))


def end_session_url(config: SsoConfig, *, post_logout_redirect_uri: str, logout_hint: str = "") -> str | None:
    """The provider's sign-out page for this person, or None if the provider has none or cannot be reached."""
    try:
        endpoint = discovery(config).get("end_session_endpoint")
    except SsoUnavailable as exc:
        log.warning("single sign-out skipped: %s", exc)
        return None
    if not endpoint:
        return None
    params = {"post_logout_redirect_uri": post_logout_redirect_uri, "client_id": config.client_id}
    if logout_hint:
        params["logout_hint"] = logout_hint
    return f"{endpoint}{'&' if '?' in str(endpoint) else '?'}{urlencode(params)}"
