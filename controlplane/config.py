"""Every setting Pareto reads from the environment, in one typed place.

Django's settings module reads `CONFIG` and nothing else reads `os.environ` for configuration.
No secret has a production default: `PARETO_SECRET_KEY` must be given (the `./pareto up` launcher
generates one under `var/` for the embedded default).
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


def _split_csv(value: object) -> object:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


AuthMode = Literal["local", "entra"]
_GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


def _local_only() -> list[AuthMode]:
    return ["local"]


class Config(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore", case_sensitive=False)

    debug: bool = Field(False, validation_alias="PARETO_DEBUG")
    secret_key: SecretStr = Field(validation_alias="PARETO_SECRET_KEY")
    database_url: str = Field(validation_alias="DATABASE_URL")
    redis_url: str = Field(validation_alias="REDIS_URL")
    allowed_hosts: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["localhost", "127.0.0.1"], validation_alias="PARETO_ALLOWED_HOSTS"
    )
    csrf_trusted_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list, validation_alias="PARETO_CSRF_TRUSTED_ORIGINS"
    )
    # Served over HTTPS (secure cookies, HSTS, redirect). The embedded launcher serves plain HTTP on
    # 127.0.0.1 and turns this off; production keeps the default.
    https: bool = Field(True, validation_alias="PARETO_HTTPS")
    # Behind a TLS-terminating proxy that sets X-Forwarded-Proto.
    behind_proxy: bool = Field(False, validation_alias="PARETO_BEHIND_PROXY")
    session_idle_timeout_seconds: int = Field(8 * 3600, ge=60, validation_alias="PARETO_SESSION_IDLE_TIMEOUT")
    time_zone: str = Field("UTC", validation_alias="PARETO_TIME_ZONE")
    log_level: str = Field("INFO", validation_alias="PARETO_LOG_LEVEL")
    static_root: str = Field("staticfiles", validation_alias="PARETO_STATIC_ROOT")
    # A worker heartbeat older than this makes /readyz fail.
    worker_heartbeat_max_age_seconds: int = Field(120, ge=5, validation_alias="PARETO_WORKER_HEARTBEAT_MAX_AGE")
    worker_heartbeat_interval_seconds: float = Field(30.0, gt=0, validation_alias="PARETO_WORKER_HEARTBEAT_INTERVAL")
    # Endpoint lifecycle (apps.endpoints): Pareto's own limit for a rollout, status polling backoff, reconciler.
    deploy_deadline_seconds: int = Field(900, ge=10, validation_alias="PARETO_DEPLOY_DEADLINE")
    poll_initial_seconds: float = Field(0.5, gt=0, validation_alias="PARETO_POLL_INITIAL")
    poll_max_seconds: float = Field(2.0, gt=0, validation_alias="PARETO_POLL_MAX")
    reconcile_interval_seconds: float = Field(30.0, gt=0, validation_alias="PARETO_RECONCILE_INTERVAL")
    ray_http_timeout_seconds: float = Field(10.0, gt=0, validation_alias="PARETO_RAY_HTTP_TIMEOUT")
    # KV-cache budget (GiB) per vLLM replica on CPU-only clusters (VLLM_CPU_KVCACHE_SPACE).
    cpu_kvcache_gib: int = Field(1, ge=1, validation_alias="PARETO_CPU_KVCACHE_GIB")
    # Dotted path of the function that turns an endpoint into its Ray Serve application (a dict). The benchmark
    # swaps in a light application (apps.endpoints.runtime.lightapp.light_application) to time Pareto alone.
    serve_app_builder: str = Field(
        "apps.endpoints.runtime.serve_config.serve_application", validation_alias="PARETO_SERVE_APP_BUILDER"
    )
    # Kubernetes runtime (apps.endpoints.runtime.kube, docs/kubernetes.md).
    kube_http_timeout_seconds: float = Field(10.0, gt=0, validation_alias="PARETO_KUBE_HTTP_TIMEOUT")
    # Tries of one API call on timeouts, 5xx and 429 before the task's own retry takes over, and the first pause.
    kube_retries: int = Field(3, ge=1, le=10, validation_alias="PARETO_KUBE_RETRIES")
    kube_retry_backoff_seconds: float = Field(0.5, ge=0, validation_alias="PARETO_KUBE_RETRY_BACKOFF")
    # How long one watch request stays open (timeoutSeconds); beat starts the next one.
    kube_watch_seconds: int = Field(50, ge=1, le=3600, validation_alias="PARETO_KUBE_WATCH_SECONDS")
    # Team namespaces are "<prefix><team slug>"; a team slug has at most 40 characters, a namespace 63.
    kube_namespace_prefix: str = Field(
        "pareto-",
        max_length=23,
        pattern=r"^([a-z0-9]([-a-z0-9]*[-a-z0-9])?)?$",
        validation_alias="PARETO_KUBE_NAMESPACE_PREFIX",
    )
    # Most GPUs one container of a team may ask for (a LimitRange per namespace); 0: no LimitRange.
    kube_max_gpus_per_pod: int = Field(8, ge=0, le=64, validation_alias="PARETO_KUBE_MAX_GPUS_PER_POD")
    # Metering (apps.metering, docs/metering.md): scrape interval, how long minute rows stay, statement time zone.
    metering_scrape_interval_seconds: float = Field(15.0, ge=1, validation_alias="PARETO_METERING_SCRAPE_INTERVAL")
    metering_minute_retention_days: int = Field(14, ge=1, validation_alias="PARETO_METERING_MINUTE_RETENTION_DAYS")
    metering_rollup_interval_seconds: float = Field(300.0, ge=10, validation_alias="PARETO_METERING_ROLLUP_INTERVAL")
    metering_http_timeout_seconds: float = Field(5.0, gt=0, validation_alias="PARETO_METERING_HTTP_TIMEOUT")
    # Minutes of GPU time filled in after the accrual job was not running (worker down); older gaps stay gaps.
    metering_backfill_minutes: int = Field(1440, ge=1, validation_alias="PARETO_METERING_BACKFILL_MINUTES")
    statement_time_zone: str = Field("UTC", validation_alias="PARETO_STATEMENT_TIME_ZONE")
    email_backend: str = Field(
        "django.core.mail.backends.console.EmailBackend", validation_alias="PARETO_EMAIL_BACKEND"
    )
    email_host: str = Field("localhost", validation_alias="PARETO_EMAIL_HOST")
    email_port: int = Field(25, validation_alias="PARETO_EMAIL_PORT")
    default_from_email: str = Field("pareto@localhost", validation_alias="PARETO_FROM_EMAIL")

    # Sign-in (docs/sso.md): local accounts, Microsoft Entra ID single sign-on, or both.
    auth_modes: Annotated[list[AuthMode], NoDecode] = Field(
        default_factory=_local_only, min_length=1, validation_alias="PARETO_AUTH_MODES"
    )
    entra_tenant_id: str = Field("", validation_alias="PARETO_ENTRA_TENANT_ID")
    entra_client_id: str = Field("", validation_alias="PARETO_ENTRA_CLIENT_ID")
    entra_client_secret: SecretStr = Field(SecretStr(""), validation_alias="PARETO_ENTRA_CLIENT_SECRET")
    # Instead of a secret: a .pfx, or a .pem holding the private key and its certificate.
    entra_client_certificate_path: str = Field("", validation_alias="PARETO_ENTRA_CLIENT_CERTIFICATE_PATH")
    entra_client_certificate_passphrase: SecretStr = Field(
        SecretStr(""), validation_alias="PARETO_ENTRA_CLIENT_CERTIFICATE_PASSPHRASE"
    )
    # Only for a .pem without its certificate: the SHA-1 thumbprint shown in the app registration.
    entra_client_certificate_thumbprint: str = Field("", validation_alias="PARETO_ENTRA_CLIENT_CERTIFICATE_THUMBPRINT")
    # Empty: built from the request (https://<host>/sso/callback/). Set it behind proxies that rewrite the host.
    entra_redirect_uri: str = Field("", validation_alias="PARETO_ENTRA_REDIRECT_URI")
    # Empty: https://login.microsoftonline.com/<tenant id>. Another cloud: e.g. https://login.microsoftonline.us/<tid>.
    entra_authority: str = Field("", validation_alias="PARETO_ENTRA_AUTHORITY")
    # A generic OpenID Connect provider instead of Entra ID (https, with a path); used by the tests.
    entra_oidc_authority: str = Field("", validation_alias="PARETO_ENTRA_OIDC_AUTHORITY")
    entra_scopes: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["User.Read", "email"], validation_alias="PARETO_ENTRA_SCOPES"
    )
    # Values of Entra app roles (the `roles` claim) that grant the platform roles.
    entra_admin_roles: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["Pareto.Admin"], validation_alias="PARETO_ENTRA_ADMIN_ROLES"
    )
    entra_finance_roles: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["Pareto.Finance"], validation_alias="PARETO_ENTRA_FINANCE_ROLES"
    )
    entra_http_timeout_seconds: float = Field(10.0, gt=0, validation_alias="PARETO_ENTRA_HTTP_TIMEOUT")
    graph_url: str = Field("https://graph.microsoft.com/v1.0", validation_alias="PARETO_GRAPH_URL")

    @field_validator(
        "allowed_hosts",
        "csrf_trusted_origins",
        "auth_modes",
        "entra_admin_roles",
        "entra_finance_roles",
        mode="before",
    )
    @classmethod
    def _csv(cls, value: object) -> object:
        return _split_csv(value)

    @field_validator("entra_scopes", mode="before")
    @classmethod
    def _scopes(cls, value: object) -> object:
        # Scopes are usually written space-separated, as in OAuth; commas work too.
        if isinstance(value, str):
            return value.replace(",", " ").split()
        return value

    @field_validator("statement_time_zone")
    @classmethod
    def _whole_hour_zone(cls, value: str) -> str:
        # Hourly rollups are UTC hours; a zone whose offset is not whole hours would cut hours in two at midnight.
        import datetime as dt
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            zone = ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
        for month in range(1, 13):
            offset = dt.datetime(2025, month, 1, tzinfo=zone).utcoffset() or dt.timedelta(0)
            if offset.total_seconds() % 3600:
                raise ValueError(f"{value} is {offset} from UTC: statements need a zone with whole-hour offsets")
        return value

    @model_validator(mode="after")
    def _entra_complete(self) -> Config:
        if "entra" not in self.auth_modes:
            return self
        missing = []
        if not self.entra_client_id:
            missing.append("PARETO_ENTRA_CLIENT_ID")
        if not self.entra_client_secret.get_secret_value() and not self.entra_client_certificate_path:
            missing.append("PARETO_ENTRA_CLIENT_SECRET or PARETO_ENTRA_CLIENT_CERTIFICATE_PATH")
        if not self.entra_tenant_id and not self.entra_oidc_authority:
            missing.append("PARETO_ENTRA_TENANT_ID")
        if missing:
            raise ValueError(f"PARETO_AUTH_MODES includes entra, so set: {', '.join(missing)} (see docs/sso.md)")
        if self.entra_tenant_id and not _GUID.match(self.entra_tenant_id.strip()):
            # Tokens carry the tenant as a GUID (`tid`); a domain name would never match it.
            raise ValueError("PARETO_ENTRA_TENANT_ID must be the Directory (tenant) ID, a GUID, not a domain name")
        return self


@lru_cache(maxsize=1)
def load() -> Config:
    try:
        return Config()  # type: ignore[call-arg]  # values come from the environment
    except Exception as exc:  # pydantic.ValidationError: make the missing names obvious
        raise SystemExit(
            f"Pareto configuration error:\n{exc}\n\n"
            "Set the variables above (see docs/configuration.md), or start with `./pareto up`, "
            "which provides embedded PostgreSQL and Redis."
        ) from exc
