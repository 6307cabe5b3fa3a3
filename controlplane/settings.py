"""Django settings. Values come from `controlplane.config` only."""

from __future__ import annotations

from pathlib import Path

import dj_database_url

from controlplane.config import load

CONFIG = load()
BASE_DIR = Path(__file__).resolve().parent.parent

DEBUG = CONFIG.debug
SECRET_KEY = CONFIG.secret_key.get_secret_value()
ALLOWED_HOSTS = CONFIG.allowed_hosts
CSRF_TRUSTED_ORIGINS = CONFIG.csrf_trusted_origins

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.postgres",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_htmx",
    "apps.accounts",
    "apps.audit",
    "apps.teams",
    "apps.inventory",
    "apps.catalog",
    "apps.endpoints",
    "apps.metering",
    "apps.dashboards",
    "apps.core",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
]

ROOT_URLCONF = "controlplane.urls"
WSGI_APPLICATION = "controlplane.wsgi.application"
ASGI_APPLICATION = "controlplane.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "apps.accounts.context_processors.access",
                "apps.endpoints.context_processors.approvals",
            ],
        },
    },
]

DATABASES = {"default": dj_database_url.parse(CONFIG.database_url, conn_max_age=60, conn_health_checks=True)}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
FORMS_URLFIELD_ASSUME_HTTPS = True  # Django 6 behaviour: a URL typed without a scheme is https

CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": CONFIG.redis_url}}

AUTH_USER_MODEL = "accounts.User"
AUTHENTICATION_BACKENDS = ["django.contrib.auth.backends.ModelBackend"]
LOGIN_URL = "accounts:login"
LOGIN_REDIRECT_URL = "core:home"
LOGOUT_REDIRECT_URL = "accounts:login"
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = CONFIG.time_zone
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATICFILES_FINDERS = [
    "django.contrib.staticfiles.finders.FileSystemFinder",
    "django.contrib.staticfiles.finders.AppDirectoriesFinder",
    "apps.core.staticfinders.PlotlyFinder",  # plotly.js from the pinned plotly package: vendor/plotly.min.js
]
STATIC_ROOT = BASE_DIR / CONFIG.static_root
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}
# Tests and DEBUG serve static files straight from the finders without collectstatic.
WHITENOISE_USE_FINDERS = DEBUG

# Sessions and cookies: HttpOnly, SameSite=Lax, secure over HTTPS, idle timeout renewed on each request.
SESSION_ENGINE = "django.contrib.sessions.backends.db"
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
SESSION_COOKIE_AGE = CONFIG.session_idle_timeout_seconds
SESSION_SAVE_EVERY_REQUEST = True
CSRF_COOKIE_SAMESITE = "Lax"
SESSION_COOKIE_SECURE = CONFIG.https
CSRF_COOKIE_SECURE = CONFIG.https
SECURE_SSL_REDIRECT = CONFIG.https
SECURE_HSTS_SECONDS = 31536000 if CONFIG.https else 0
SECURE_HSTS_INCLUDE_SUBDOMAINS = CONFIG.https
SECURE_HSTS_PRELOAD = CONFIG.https
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
if CONFIG.behind_proxy:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
# Health probes come over plain HTTP from the orchestrator.
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$"]

# Sign-in: local accounts and/or Entra ID single sign-on (apps/accounts/sso, docs/sso.md).
PARETO_AUTH_MODES = list(dict.fromkeys(CONFIG.auth_modes))
PARETO_ENTRA_TENANT_ID = CONFIG.entra_tenant_id
PARETO_ENTRA_CLIENT_ID = CONFIG.entra_client_id
PARETO_ENTRA_CLIENT_SECRET = CONFIG.entra_client_secret.get_secret_value()
PARETO_ENTRA_CLIENT_CERTIFICATE_PATH = CONFIG.entra_client_certificate_path
PARETO_ENTRA_CLIENT_CERTIFICATE_PASSPHRASE = CONFIG.entra_client_certificate_passphrase.get_secret_value()
PARETO_ENTRA_CLIENT_CERTIFICATE_THUMBPRINT = CONFIG.entra_client_certificate_thumbprint
PARETO_ENTRA_REDIRECT_URI = CONFIG.entra_redirect_uri
PARETO_ENTRA_AUTHORITY = CONFIG.entra_authority
PARETO_ENTRA_OIDC_AUTHORITY = CONFIG.entra_oidc_authority
PARETO_ENTRA_SCOPES = CONFIG.entra_scopes
PARETO_ENTRA_ADMIN_ROLES = CONFIG.entra_admin_roles
PARETO_ENTRA_FINANCE_ROLES = CONFIG.entra_finance_roles
PARETO_ENTRA_HTTP_TIMEOUT = CONFIG.entra_http_timeout_seconds
PARETO_GRAPH_URL = CONFIG.graph_url

EMAIL_BACKEND = CONFIG.email_backend
EMAIL_HOST = CONFIG.email_host
EMAIL_PORT = CONFIG.email_port
DEFAULT_FROM_EMAIL = CONFIG.default_from_email

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "apps.accounts.authentication.ApiTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PAGINATION_CLASS": "apps.core.api.Pagination",
    "PAGE_SIZE": 50,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "apps.core.api.exception_handler",
    "DEFAULT_RENDERER_CLASSES": [
        "rest_framework.renderers.JSONRenderer",
        "rest_framework.renderers.BrowsableAPIRenderer",
    ],
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Pareto API",
    "DESCRIPTION": "Control plane for LLM inference: catalog, teams, GPU quotas, budgets, clusters, audit.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.IsAuthenticated"],
    "COMPONENT_SPLIT_REQUEST": True,
    # Swagger UI and Redoc from our own static files (drf-spectacular-sidecar): no CDN, works offline.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "SCHEMA_PATH_PREFIX": r"/api/v1",
    # Several models have a field called `state`; each choice set gets its own schema name.
    "ENUM_NAME_OVERRIDES": {
        "EndpointStateEnum": "apps.endpoints.models.Endpoint.State",
        "OperationStateEnum": "apps.endpoints.models.Operation.State",
        "QuotaRequestStateEnum": "apps.endpoints.models.QuotaRequest.State",
        "StatementStatusEnum": "apps.metering.models.Statement.Status",
    },
}

CELERY_BROKER_URL = CONFIG.redis_url
CELERY_RESULT_BACKEND = CONFIG.redis_url
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TIMEZONE = "UTC"
PARETO_WORKER_HEARTBEAT_MAX_AGE = CONFIG.worker_heartbeat_max_age_seconds
PARETO_WORKER_HEARTBEAT_INTERVAL = CONFIG.worker_heartbeat_interval_seconds
PARETO_DEPLOY_DEADLINE_SECONDS = CONFIG.deploy_deadline_seconds
PARETO_POLL_INITIAL_SECONDS = CONFIG.poll_initial_seconds
PARETO_POLL_MAX_SECONDS = CONFIG.poll_max_seconds
PARETO_RECONCILE_INTERVAL_SECONDS = CONFIG.reconcile_interval_seconds
PARETO_RAY_HTTP_TIMEOUT = CONFIG.ray_http_timeout_seconds
PARETO_CPU_KVCACHE_GIB = CONFIG.cpu_kvcache_gib
PARETO_SERVE_APP_BUILDER = CONFIG.serve_app_builder
PARETO_KUBE_HTTP_TIMEOUT = CONFIG.kube_http_timeout_seconds
PARETO_KUBE_RETRIES = CONFIG.kube_retries
PARETO_KUBE_RETRY_BACKOFF_SECONDS = CONFIG.kube_retry_backoff_seconds
PARETO_KUBE_WATCH_SECONDS = CONFIG.kube_watch_seconds
PARETO_KUBE_NAMESPACE_PREFIX = CONFIG.kube_namespace_prefix
PARETO_KUBE_MAX_GPUS_PER_POD = CONFIG.kube_max_gpus_per_pod
PARETO_METERING_SCRAPE_INTERVAL_SECONDS = CONFIG.metering_scrape_interval_seconds
PARETO_METERING_MINUTE_RETENTION_DAYS = CONFIG.metering_minute_retention_days
PARETO_METERING_ROLLUP_INTERVAL_SECONDS = CONFIG.metering_rollup_interval_seconds
PARETO_METERING_HTTP_TIMEOUT = CONFIG.metering_http_timeout_seconds
PARETO_METERING_BACKFILL_MINUTES = CONFIG.metering_backfill_minutes
PARETO_STATEMENT_TIME_ZONE = CONFIG.statement_time_zone

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": CONFIG.log_level},
    "loggers": {"django.db.backends": {"level": "INFO"}},
}
