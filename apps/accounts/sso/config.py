"""Single sign-on settings, read from Django settings when they are needed (see controlplane/config.py)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.conf import settings

RESERVED_SCOPES = frozenset({"openid", "profile", "offline_access"})
ENTRA = "entra"
LOCAL = "local"


def auth_modes() -> list[str]:
    return list(settings.PARETO_AUTH_MODES)


def local_enabled() -> bool:
    return LOCAL in auth_modes()


def entra_enabled() -> bool:
    return ENTRA in auth_modes()


@dataclass(frozen=True)
class SsoConfig:
    tenant_id: str
    client_id: str
    client_secret: str
    certificate_path: str
    certificate_passphrase: str
    certificate_thumbprint: str
    redirect_uri: str
    authority: str  # Entra: https://login.microsoftonline.com/<tenant>
    oidc_authority: str  # a generic OpenID Connect provider instead (tests, other providers)
    scopes: tuple[str, ...]
    admin_roles: frozenset[str]
    finance_roles: frozenset[str]
    graph_url: str
    http_timeout: float

    @classmethod
    def from_settings(cls) -> SsoConfig:
        tenant = settings.PARETO_ENTRA_TENANT_ID.strip()
        authority = (settings.PARETO_ENTRA_AUTHORITY or "").strip().rstrip("/")
        if not authority and tenant:
            authority = f"https://login.microsoftonline.com/{tenant}"
        return cls(
            tenant_id=tenant,
            client_id=settings.PARETO_ENTRA_CLIENT_ID.strip(),
            client_secret=settings.PARETO_ENTRA_CLIENT_SECRET,
            certificate_path=settings.PARETO_ENTRA_CLIENT_CERTIFICATE_PATH,
            certificate_passphrase=settings.PARETO_ENTRA_CLIENT_CERTIFICATE_PASSPHRASE,
            certificate_thumbprint=settings.PARETO_ENTRA_CLIENT_CERTIFICATE_THUMBPRINT,
            redirect_uri=settings.PARETO_ENTRA_REDIRECT_URI.strip(),
            authority=authority,
            oidc_authority=(settings.PARETO_ENTRA_OIDC_AUTHORITY or "").strip().rstrip("/"),
            # msal always asks for these and refuses them in the list.
            scopes=tuple(s for s in settings.PARETO_ENTRA_SCOPES if s not in RESERVED_SCOPES),
            admin_roles=frozenset(settings.PARETO_ENTRA_ADMIN_ROLES),
            finance_roles=frozenset(settings.PARETO_ENTRA_FINANCE_ROLES),
            graph_url=settings.PARETO_GRAPH_URL.rstrip("/"),
            http_timeout=float(settings.PARETO_ENTRA_HTTP_TIMEOUT),
        )

    @property
    def is_entra(self) -> bool:
        """Entra ID (tenant id + object id identify a person) rather than a generic provider (issuer + sub)."""
        return bool(self.tenant_id)

    @property
    def discovery_url(self) -> str:
        if self.oidc_authority:
            return f"{self.oidc_authority}/.well-known/openid-configuration"
        return f"{self.authority}/v2.0/.well-known/openid-configuration"

    def client_credential(self) -> str | dict[str, Any]:
        """A client secret, or a certificate in the form msal takes (a .pfx path, or PEM key and certificate)."""
        if not self.certificate_path:
            return self.client_secret
        credential: dict[str, Any] = {}
        if self.certificate_passphrase:
            credential["passphrase"] = self.certificate_passphrase
        path = Path(self.certificate_path)
        if path.suffix.lower() in (".pfx", ".p12"):
            credential["private_key_pfx_path"] = str(path)
            return credential
        pem = path.read_text()
        credential["private_key"] = pem
        if self.certificate_thumbprint:
            credential["thumbprint"] = self.certificate_thumbprint
        elif "BEGIN CERTIFICATE" in pem:
            # msal takes the SHA-256 thumbprint (and the x5c header) from the certificate itself.
            start = pem.index("-----BEGIN CERTIFICATE-----")
            end = pem.index("-----END CERTIFICATE-----") + len("-----END CERTIFICATE-----")
            credential["public_certificate"] = pem[start:end]
        return credential
