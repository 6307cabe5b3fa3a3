"""Single sign-on settings: what PARETO_AUTH_MODES=entra needs, and a certificate instead of a client secret."""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID
from pydantic import ValidationError

from apps.accounts.sso import client
from apps.accounts.sso.config import SsoConfig
from apps.accounts.tests.oidc_provider import TENANT, sso_environment
from controlplane.config import Config

BASE = {"PARETO_SECRET_KEY": "x", "DATABASE_URL": "postgres://h/db", "REDIS_URL": "redis://h/0"}


def config(monkeypatch, **env: str) -> Config:
    for name in list(BASE) + [n for n in env if n not in BASE]:
        monkeypatch.delenv(name, raising=False)
    for name, value in {**BASE, **env}.items():
        monkeypatch.setenv(name, value)
    return Config()  # type: ignore[call-arg]


def test_local_sign_in_is_the_default(monkeypatch):
    assert config(monkeypatch).auth_modes == ["local"]


def test_modes_and_lists_are_read_from_the_environment(monkeypatch):
    loaded = config(
        monkeypatch,
        PARETO_AUTH_MODES="local, entra",
        PARETO_ENTRA_TENANT_ID=TENANT,
        PARETO_ENTRA_CLIENT_ID="app",
        PARETO_ENTRA_CLIENT_SECRET="s",
        PARETO_ENTRA_SCOPES="User.Read GroupMember.Read.All",
        PARETO_ENTRA_ADMIN_ROLES="Pareto.Admin,Platform.Owner",
    )
    assert loaded.auth_modes == ["local", "entra"]
    assert loaded.entra_scopes == ["User.Read", "GroupMember.Read.All"]
    assert loaded.entra_admin_roles == ["Pareto.Admin", "Platform.Owner"]
    assert "s" not in repr(loaded.entra_client_secret)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"PARETO_AUTH_MODES": "ldap"}, "Input should be 'local' or 'entra'"),
        ({"PARETO_AUTH_MODES": "entra"}, "PARETO_ENTRA_CLIENT_ID"),
        (
            {"PARETO_AUTH_MODES": "entra", "PARETO_ENTRA_CLIENT_ID": "a", "PARETO_ENTRA_TENANT_ID": TENANT},
            "PARETO_ENTRA_CLIENT_SECRET or PARETO_ENTRA_CLIENT_CERTIFICATE_PATH",
        ),
        (
            {
                "PARETO_AUTH_MODES": "entra",
                "PARETO_ENTRA_CLIENT_ID": "a",
                "PARETO_ENTRA_CLIENT_SECRET": "s",
                "PARETO_ENTRA_TENANT_ID": "contoso.onmicrosoft.com",
            },
            "must be the Directory (tenant) ID",
        ),
    ],
    ids=["unknown-mode", "no-client-id", "no-credential", "tenant-not-a-guid"],
)
def test_incomplete_entra_settings_stop_the_start(monkeypatch, env, message):
    with pytest.raises(ValidationError, match=message.replace("(", r"\(").replace(")", r"\)")):
        config(monkeypatch, **env)


def test_entra_authority_defaults_to_the_tenant(settings):
    settings.PARETO_ENTRA_TENANT_ID = TENANT
    settings.PARETO_ENTRA_AUTHORITY = ""
    settings.PARETO_ENTRA_OIDC_AUTHORITY = ""
    settings.PARETO_ENTRA_SCOPES = ["User.Read", "openid", "offline_access"]
    loaded = SsoConfig.from_settings()
    assert loaded.authority == f"https://login.microsoftonline.com/{TENANT}"
    assert loaded.discovery_url == f"https://login.microsoftonline.com/{TENANT}/v2.0/.well-known/openid-configuration"
    assert loaded.scopes == ("User.Read",)  # msal adds openid/profile/offline_access itself and refuses them


def make_certificate(tmp_path):
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "pareto")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    cert_pem = cert.public_bytes(serialization.Encoding.PEM).decode()
    pem = tmp_path / "pareto-sso.pem"
    pem.write_text(key_pem + cert_pem)
    pfx = tmp_path / "pareto-sso.pfx"
    pfx.write_bytes(
        pkcs12.serialize_key_and_certificates(
            b"pareto", key, cert, None, serialization.BestAvailableEncryption(b"pass phrase")
        )
    )
    return pem, pfx, key_pem, cert_pem


def test_a_certificate_replaces_the_secret_and_msal_loads_it(settings, monkeypatch, tmp_path, db):
    pem, pfx, key_pem, cert_pem = make_certificate(tmp_path)
    with sso_environment(settings, monkeypatch, tmp_path):
        settings.PARETO_ENTRA_CLIENT_SECRET = ""
        settings.PARETO_ENTRA_CLIENT_CERTIFICATE_PATH = str(pem)
        credential = SsoConfig.from_settings().client_credential()
        assert credential == {"private_key": key_pem + cert_pem, "public_certificate": cert_pem.strip()}
        # msal reads the certificate (and opens a .pfx with its passphrase) when the app is made.
        assert client.flow_begin(SsoConfig.from_settings(), redirect_uri="http://testserver/sso/callback/")

        settings.PARETO_ENTRA_CLIENT_CERTIFICATE_PATH = str(pfx)
        settings.PARETO_ENTRA_CLIENT_CERTIFICATE_PASSPHRASE = "pass phrase"
        credential = SsoConfig.from_settings().client_credential()
        assert credential == {"private_key_pfx_path": str(pfx), "passphrase": "pass phrase"}
        assert client.flow_begin(SsoConfig.from_settings(), redirect_uri="http://testserver/sso/callback/")

        settings.PARETO_ENTRA_CLIENT_CERTIFICATE_PASSPHRASE = "wrong"
        with pytest.raises(client.SsoUnavailable):
            client.flow_begin(SsoConfig.from_settings(), redirect_uri="http://testserver/sso/callback/")
