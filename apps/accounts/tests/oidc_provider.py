"""A real OpenID Connect provider and a Graph stand-in for the single sign-on tests. No internet needed.

- `Provider`: `oidc-provider-mock` (authlib's authorization server in a Flask app) served over TLS with a
  self-signed certificate, mounted under `/tenant` (msal wants https and an authority with a path). It issues real
  codes and RS256-signed ID tokens with whatever claims a test gives a user (`tid`, `oid`, `roles`, `groups`,
  `_claim_names`...). `tamper_id_token` lets a test play a provider that issues a bad token (expired, for another
  audience, signed with another key...): the token response is rewritten before it leaves the provider.
- `GraphServer`: answers `/v1.0/me/transitiveMemberOf/microsoft.graph.group` in pages, and only for an access
  token that the provider's own userinfo endpoint accepts.
- `sso_environment`: both running, Django settings pointing at them, REQUESTS_CA_BUNDLE at the test certificate.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import ssl
import threading
import urllib.parse
import uuid
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import flask
import jwt
import requests
import werkzeug.serving
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID
from werkzeug.exceptions import NotFound
from werkzeug.middleware.dispatcher import DispatcherMiddleware

with warnings.catch_warnings():
    # authlib turns its own deprecation warnings to "always" when first imported; the mock uses authlib.jose.
    import authlib.deprecate  # noqa: F401

    warnings.simplefilter("ignore", DeprecationWarning)
    import oidc_provider_mock
    from authlib.jose import RSAKey

TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
OTHER_TENANT = "f8cdef31-a31e-4b4a-93e4-5f571e91255a"
CLIENT_ID = "6731de76-14a6-49ae-97bc-6eba6914391e"
MOUNT = "/tenant"

# An ID-token rewrite: (claims, provider's private key PEM) -> the token the provider sends instead.
Tamper = Callable[[dict[str, Any], bytes], str]


def make_certificate(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and localhost, and its key."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "pareto test provider")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "provider-cert.pem", directory / "provider-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


def sign(claims: dict[str, Any], key_pem: bytes, headers: dict[str, Any] | None = None) -> str:
    return jwt.encode(claims, key_pem, algorithm="RS256", headers=headers)


def other_key_pem() -> bytes:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


@contextmanager
def _serve(app: Any, ssl_context: ssl.SSLContext | None = None) -> Iterator[werkzeug.serving.BaseWSGIServer]:
    server = werkzeug.serving.make_server("127.0.0.1", 0, app, threaded=True, ssl_context=ssl_context)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


class Provider:
    """oidc-provider-mock over TLS under /tenant. Start with `with provider.running():`."""

    def __init__(self, *, cert: Path, key: Path) -> None:
        self.cert, self.key = cert, key
        self.tamper_id_token: Tamper | None = None
        self.jwks_requests = 0
        self.token_requests = 0
        self._storage: Any = None
        self.base_url = ""
        self.issuer = ""

    @contextmanager
    def running(self) -> Iterator[Provider]:
        app = oidc_provider_mock.app(require_nonce=True)

        @app.before_request
        def _observe() -> None:
            self._storage = flask.g.oidc_provider_mock_storage
            if flask.request.path == "/jwks":
                self.jwks_requests += 1
            if flask.request.path == "/oauth2/token":
                self.token_requests += 1

        @app.after_request
        def _tamper(response: flask.Response) -> flask.Response:
            hook = self.tamper_id_token
            if hook is None or flask.request.path != "/oauth2/token" or response.status_code != 200:
                return response
            body = json.loads(response.get_data())
            claims = jwt.decode(body["id_token"], options={"verify_signature": False})
            body["id_token"] = hook(claims, flask.g.oidc_provider_mock_storage.jwk.as_pem(is_private=True))
            response.set_data(json.dumps(body))
            return response

        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.cert, self.key)
        with _serve(DispatcherMiddleware(NotFound(), {MOUNT: app}), context) as server:
            self.issuer = f"https://127.0.0.1:{server.server_port}"
            self.base_url = self.issuer + MOUNT
            yield self

    def _verify(self) -> str:
        return str(self.cert)

    def set_user(self, sub: str, claims: dict[str, Any]) -> None:
        """The provider's own API: what it puts in this person's ID tokens from now on."""
        response = requests.put(f"{self.base_url}/users/{sub}", json=claims, verify=self._verify(), timeout=10)
        assert response.status_code == 204, response.text

    def authorize(self, auth_uri: str, sub: str) -> str:
        """Be the person at the provider's page: choose `sub` and approve. Returns the callback URL."""
        assert auth_uri.startswith(self.base_url + "/oauth2/authorize?"), auth_uri
        response = requests.post(auth_uri, data={"sub": sub}, allow_redirects=False, verify=self._verify(), timeout=10)
        assert response.status_code == 302, response.text
        return response.headers["Location"]

    def deny(self, auth_uri: str) -> str:
        response = requests.post(
            auth_uri, data={"action": "deny"}, allow_redirects=False, verify=self._verify(), timeout=10
        )
        assert response.status_code == 302, response.text
        return response.headers["Location"]

    def rotate_key(self) -> None:
        """A new signing key, as Entra does now and then; the JWKS then publishes only the new one."""
        assert self._storage is not None, "the provider has served no request yet"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            self._storage.jwk = RSAKey.generate_key(is_private=True)

    def key_id(self) -> str:
        response = requests.get(f"{self.base_url}/jwks", verify=self._verify(), timeout=10)
        return str(response.json()["keys"][0]["kid"])


@dataclass
class GraphServer:
    """Microsoft Graph's /me/transitiveMemberOf for the tests: groups per `sub`, two per page."""

    provider: Provider
    groups: dict[str, list[str]] = field(default_factory=dict)
    fail_with: int | None = None  # answer this HTTP status instead (Graph down, throttled...)
    requests_seen: list[str] = field(default_factory=list)
    url: str = ""
    page_size: int = 2

    @contextmanager
    def running(self) -> Iterator[GraphServer]:
        graph = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                graph.requests_seen.append(self.path)
                parsed = urllib.parse.urlparse(self.path)
                if parsed.path != "/v1.0/me/transitiveMemberOf/microsoft.graph.group":
                    return self._json(404, {"error": {"code": "Request_ResourceNotFound"}})
                if graph.fail_with is not None:
                    return self._json(graph.fail_with, {"error": {"code": "serviceNotAvailable"}})
                token = self.headers.get("Authorization", "").removeprefix("Bearer ")
                # Graph trusts only tokens its identity provider issued: ask the provider who this is.
                who = requests.get(
                    f"{graph.provider.base_url}/userinfo",
                    headers={"Authorization": f"Bearer {token}"},
                    verify=str(graph.provider.cert),
                    timeout=10,
                )
                if who.status_code != 200:
                    return self._json(401, {"error": {"code": "InvalidAuthenticationToken"}})
                ids = graph.groups.get(who.json()["sub"], [])
                start = int(urllib.parse.parse_qs(parsed.query).get("$skiptoken", ["0"])[0])
                page = ids[start : start + graph.page_size]
                body: dict[str, Any] = {"value": [{"@odata.type": "#microsoft.graph.group", "id": g} for g in page]}
                if start + graph.page_size < len(ids):
                    body["@odata.nextLink"] = (
                        f"{graph.url}/me/transitiveMemberOf/microsoft.graph.group?$skiptoken={start + graph.page_size}"
                    )
                return self._json(200, body)

            def _json(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        thread.start()
        self.url = f"http://127.0.0.1:{server.server_port}/v1.0"
        try:
            yield self
        finally:
            server.shutdown()
            server.server_close()
            thread.join(5)


@dataclass
class SsoWorld:
    provider: Provider
    graph: GraphServer

    def person(self, sub: str, **claims: Any) -> dict[str, Any]:
        """Give the provider a person of the configured tenant; returns the claims."""
        full = {
            "tid": TENANT,
            "oid": str(uuid.uuid5(uuid.NAMESPACE_URL, sub)),
            "preferred_username": f"{sub}@contoso.test",
            "email": f"{sub}@contoso.test",
            "name": sub.title(),
            **claims,
        }
        self.provider.set_user(sub, {k: v for k, v in full.items() if v is not None})
        return full


@contextmanager
def sso_environment(
    settings: Any, monkeypatch: Any, directory: Path, *, modes: list[str] | None = None
) -> Iterator[SsoWorld]:
    """Provider and Graph running; Django configured for them; caches of the previous test forgotten."""
    from apps.accounts.sso import services

    cert, key = make_certificate(directory)
    # requests (msal's HTTP client, the JWKS and Graph fetches) trusts the test certificate, as a company CA bundle.
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(cert))
    monkeypatch.setenv("CURL_CA_BUNDLE", str(cert))
    provider = Provider(cert=cert, key=key)
    with provider.running(), GraphServer(provider=provider).running() as graph:
        settings.PARETO_AUTH_MODES = modes or ["local", "entra"]
        settings.PARETO_ENTRA_TENANT_ID = TENANT
        settings.PARETO_ENTRA_CLIENT_ID = CLIENT_ID
        settings.PARETO_ENTRA_CLIENT_SECRET = "test-client-secret"
        settings.PARETO_ENTRA_OIDC_AUTHORITY = provider.base_url
        settings.PARETO_GRAPH_URL = graph.url
        services.reset_caches()
        try:
            yield SsoWorld(provider=provider, graph=graph)
        finally:
            services.reset_caches()
