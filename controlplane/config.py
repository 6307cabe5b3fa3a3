"""Every setting Pareto reads from the environment, in one typed place.

Django's settings module reads `CONFIG` and nothing else reads `os.environ` for configuration.
No secret has a production default: `PARETO_SECRET_KEY` must be given (the `./pareto up` launcher
generates one under `var/` for the embedded default).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Annotated

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


def _split_csv(value: object) -> object:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


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
    email_backend: str = Field(
        "django.core.mail.backends.console.EmailBackend", validation_alias="PARETO_EMAIL_BACKEND"
    )
    email_host: str = Field("localhost", validation_alias="PARETO_EMAIL_HOST")
    email_port: int = Field(25, validation_alias="PARETO_EMAIL_PORT")
    default_from_email: str = Field("pareto@localhost", validation_alias="PARETO_FROM_EMAIL")

    @field_validator("allowed_hosts", "csrf_trusted_origins", mode="before")
    @classmethod
    def _csv(cls, value: object) -> object:
        return _split_csv(value)


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
