"""Settings, read from the environment: docs/operations/configuration.md describes each variable.

Secrets have no default outside debug: a production start without
``DJANGO_SECRET_KEY`` fails at once with a message that says what to set.
Each setting read from the environment has a one-line comment here; its full
description (default, unit, meaning) is that page's, and only there.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent

TRUE_VALUES = {"1", "true", "yes", "on"}
#: What each renamed environment variable was called before (still read until the next
#: release, with a DeprecationWarning), and the factor from its unit to the new one.
RENAMED_ENV: dict[str, tuple[str, float | None]] = {
    "PROGRESS_COALESCE_SECONDS": ("PROGRESS_COALESCE_MS", 0.001),
    "PROGRESS_CANCEL_POLL_SECONDS": ("PROGRESS_CANCEL_POLL_MS", 0.001),
    "PROGRESS_FEED_INTERVAL_SECONDS": ("PROGRESS_FEED_INTERVAL_MS", 0.001),
    "PROGRESS_RECHECK_SECONDS": ("PROGRESS_WS_RESYNC_SECONDS", None),
    "DJANGO_DATA_UPLOAD_MAX_MEMORY_SIZE": ("DJANGO_MAX_BODY_BYTES", None),
    "DJANGO_SECURE_HSTS_SECONDS": ("DJANGO_HSTS_SECONDS", None),
    "DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS": ("DJANGO_HSTS_INCLUDE_SUBDOMAINS", None),
    "DJANGO_SECURE_HSTS_PRELOAD": ("DJANGO_HSTS_PRELOAD", None),
}
DEPRECATED_ENV_MESSAGE = "The environment variable {old} is deprecated: set {new}{unit} instead"
# Shown once per variable in every process's output (daphne's, Celery's), whatever
# Python's default of hiding DeprecationWarning outside __main__.
warnings.filterwarnings("default", message="The environment variable ", category=DeprecationWarning)


def env(name: str) -> str | None:
    """The variable's value; for a renamed one set only under its old name, that value
    in the new unit, with a ``DeprecationWarning`` naming the new variable."""
    value = os.environ.get(name)
    if value is not None or name not in RENAMED_ENV:
        return value
    old, scale = RENAMED_ENV[name]
    value = os.environ.get(old)
    if value is None:
        return None
    unit = ""
    if scale is not None and value.strip():
        try:
            value = repr(float(value) * scale)
        except ValueError as exc:
            raise ImproperlyConfigured(f"{old} must be a number, got {value!r} (set {name} instead)") from exc
        unit = " (in seconds, not milliseconds)"
    warnings.warn(DEPRECATED_ENV_MESSAGE.format(old=old, new=name, unit=unit), DeprecationWarning, stacklevel=2)
    return value


def env_bool(name: str, default: bool = False) -> bool:
    """Contract: ``1/true/yes/on`` in any case are on, anything else is off."""
    value = env(name)
    if value is None:
        return default
    return value.strip().lower() in TRUE_VALUES


def env_list(name: str, default: str) -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


def env_float(name: str, default: float) -> float:
    raw = env(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        return float(raw)
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name} must be a number, got {raw!r}") from exc


def env_int(name: str, default: int) -> int:
    return int(env_float(name, default))


DEBUG = env_bool("DJANGO_DEBUG")

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured(
            "DJANGO_SECRET_KEY is not set. Set it to a long random string, "
            "or set DJANGO_DEBUG=1 for local development "
            "(the README's run and test commands do this for you)."
        )
    SECRET_KEY = "django-insecure-development-only-key-do-not-use-in-production"

ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", "localhost,127.0.0.1")

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "channels",
    "core.serving",
    "executions",
    "progress",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # WhiteNoise, async-capable: one sync middleware would put every request in a thread.
    "core.static.AsyncWhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "config.urls"
# API paths are routed with and without the slash explicitly; a redirect would
# turn a POST into a GET in many clients.
APPEND_SLASH = False

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
            ],
        },
    },
]

WSGI_APPLICATION = "config.wsgi.application"
ASGI_APPLICATION = "config.asgi.application"

# --- Database -----------------------------------------------------------------
# SQLite by default. daphne and the Celery worker write at the same time, so
# every transaction takes the write lock up front (IMMEDIATE): a transaction that
# reads then writes would otherwise fail with "database is locked" whatever the
# timeout. WAL lets readers go on while one writer writes.
SQLITE_OPTIONS = {
    "transaction_mode": "IMMEDIATE",
    "timeout": 30,
    "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
}
DATABASE_URL = os.environ.get("DATABASE_URL", "").strip()
# 0: closed after each request or consumer read (kept ones outlive daphne's per-request threads).
DATABASE_CONN_MAX_AGE = env_int("DATABASE_CONN_MAX_AGE", 0)
# The SQLite file used when DATABASE_URL is not set.
SQLITE_PATH = os.environ.get("SQLITE_PATH", str(BASE_DIR / "db.sqlite3"))
if DATABASE_URL:
    DATABASES = {
        "default": dj_database_url.parse(
            DATABASE_URL, conn_max_age=DATABASE_CONN_MAX_AGE, conn_health_checks=DATABASE_CONN_MAX_AGE > 0
        )
    }
else:
    DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": SQLITE_PATH}}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"].setdefault("OPTIONS", {}).update(SQLITE_OPTIONS)
    # Keep each thread's connection (as for PostgreSQL above): opening one,
    # with its PRAGMAs, was most of the cost of a socket's or a request's read.
    DATABASES["default"].setdefault("CONN_MAX_AGE", 60)

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
# Serve straight from the finders so a fresh clone needs no collectstatic step;
# with debug off and collectstatic run, whitenoise serves STATIC_ROOT as usual.
WHITENOISE_USE_FINDERS = True
# STATIC_ROOT exists only after collectstatic; until then the finders serve.
warnings.filterwarnings("ignore", message="No directory at")

LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/accounts/login/"

# --- Redis: channel layer and Celery broker --------------------------------------
REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")

# hub (progress/hub.py), or channels-redis's layers for comparison (docs/benchmarks.md).
CHANNEL_LAYER_BACKENDS = {
    "hub": "progress.hub.HubChannelLayer",
    "pubsub": "channels_redis.pubsub.RedisPubSubChannelLayer",
    "core": "channels_redis.core.RedisChannelLayer",
}
CHANNEL_LAYER = os.environ.get("CHANNEL_LAYER", "hub")
if CHANNEL_LAYER not in CHANNEL_LAYER_BACKENDS:
    raise ImproperlyConfigured(
        f"CHANNEL_LAYER must be one of {', '.join(CHANNEL_LAYER_BACKENDS)}, got {CHANNEL_LAYER!r}"
    )
# Messages a socket may have waiting; one further behind repairs the gap from the database.
CHANNEL_LAYER_CAPACITY = env_int("CHANNEL_LAYER_CAPACITY", 1000)
CHANNEL_LAYERS: dict[str, dict[str, Any]] = {
    "default": {
        "BACKEND": CHANNEL_LAYER_BACKENDS[CHANNEL_LAYER],
        "CONFIG": {
            "hosts": [REDIS_URL],
            "capacity": CHANNEL_LAYER_CAPACITY,
        },
    }
}
if CHANNEL_LAYER == "core":
    CHANNEL_LAYERS["default"]["CONFIG"]["expiry"] = 60
elif CHANNEL_LAYER == "pubsub":
    del CHANNEL_LAYERS["default"]["CONFIG"]["capacity"]

CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", REDIS_URL)
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_TIMEZONE = "UTC"
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Longest run without config.timeout; the visibility timeout below stays well above it.
EXECUTION_MAX_SECONDS = env_float("EXECUTION_MAX_SECONDS", 3600)
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": int(EXECUTION_MAX_SECONDS * 2 + 600)}
# Test runs can execute tasks inline (no worker) by setting this.
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER")
# A submit while the broker is unreachable answers 503 within about this long.
CELERY_BROKER_CONNECTION_TIMEOUT = env_float("CELERY_BROKER_CONNECTION_TIMEOUT", 2)
CELERY_TASK_PUBLISH_RETRY_POLICY = {"max_retries": 2, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.5}
# What a 503 for an unreachable broker tells clients to wait before retrying.
BROKER_RETRY_AFTER_SECONDS = env_int("BROKER_RETRY_AFTER_SECONDS", 5)

# --- Liveness: every execution ends, whatever process dies -----------------------------
# The bounds these give: docs/operations/reliability.md.
# How often a running execution's monitor thread writes its heartbeat.
EXECUTION_HEARTBEAT_SECONDS = env_float("EXECUTION_HEARTBEAT_SECONDS", 5)
# A running execution whose heartbeat is older is failed (WorkerLostError).
EXECUTION_HEARTBEAT_TIMEOUT_SECONDS = env_float("EXECUTION_HEARTBEAT_TIMEOUT_SECONDS", 30)
# How often every worker sweeps (lost runs, lost messages) and records itself.
WORKER_SWEEP_SECONDS = env_float("WORKER_SWEEP_SECONDS", 10)
# A pending execution whose task message is gone is queued again after this long.
EXECUTION_REQUEUE_SECONDS = env_float("EXECUTION_REQUEUE_SECONDS", 30)
# On SIGTERM, how long a worker lets running executions finish (then WorkerShutdown).
WORKER_SHUTDOWN_GRACE_SECONDS = env_float("WORKER_SHUTDOWN_GRACE_SECONDS", 30)

# --- Durable runs (docs/guides/durable-runs.md) -----------------------------------------
# Attempts a durable run gets in all: a lost worker or an ended grace hands it over until then.
EXECUTION_MAX_ATTEMPTS = env_int("EXECUTION_MAX_ATTEMPTS", 3)
# The largest step result or checkpoint, in bytes of JSON (StepOutputTooLarge beyond).
EXECUTION_STEP_OUTPUT_MAX_BYTES = env_int("EXECUTION_STEP_OUTPUT_MAX_BYTES", 262144)

# --- Retention (docs/operations/retention.md) ------------------------------------------
# Ended executions older than this are deleted (0 keeps everything).
EXECUTION_RETENTION_DAYS = env_float("EXECUTION_RETENTION_DAYS", 30)
# How often each worker prunes.
EXECUTION_PRUNE_INTERVAL_SECONDS = env_float("EXECUTION_PRUNE_INTERVAL_SECONDS", 3600)
# How long an Idempotency-Key of a submit is remembered, per user.
IDEMPOTENCY_KEY_HOURS = env_float("IDEMPOTENCY_KEY_HOURS", 24)

# --- Progress ---------------------------------------------------------------------
# At most one progress event per execution per interval (step boundaries always).
PROGRESS_COALESCE_SECONDS = env_float("PROGRESS_COALESCE_SECONDS", 0.1)
# How often a running target looks for a cancel made through the API.
PROGRESS_CANCEL_POLL_SECONDS = env_float("PROGRESS_CANCEL_POLL_SECONDS", 0.1)
# How often each server process re-checks all its open streams (progress/recheck.py).
PROGRESS_RECHECK_SECONDS = env_float("PROGRESS_RECHECK_SECONDS", 4)
# How long a process reuses a token lookup (core/authentication.py); 0 turns the cache off.
AUTH_CACHE_SECONDS = env_float("AUTH_CACHE_SECONDS", 2)
# The execution feed sends at most one progress frame per execution per interval.
PROGRESS_FEED_INTERVAL_SECONDS = env_float("PROGRESS_FEED_INTERVAL_SECONDS", 0.25)
# How long daphne waits for a client's close reply (a slow reader keeps its last frames).
WEBSOCKET_CLOSE_TIMEOUT_SECONDS = env_float("WEBSOCKET_CLOSE_TIMEOUT_SECONDS", 60)
# How often an open event stream sends a ": keep-alive" comment.
PROGRESS_SSE_KEEPALIVE_SECONDS = env_float("PROGRESS_SSE_KEEPALIVE_SECONDS", 15)
# The "retry:" every event stream opens with: an EventSource's wait before it reconnects.
PROGRESS_SSE_RETRY_SECONDS = env_float("PROGRESS_SSE_RETRY_SECONDS", 1)

# --- Targets ----------------------------------------------------------------------------
# More modules declaring pipelines or agents, imported when the app is ready.
EXECUTION_TARGET_MODULES = [
    name.strip() for name in os.environ.get("EXECUTION_TARGET_MODULES", "").split(",") if name.strip()
]

# --- Input limits -------------------------------------------------------------------
# Size caps and nesting limit of a submit's inputs and config.
EXECUTION_INPUTS_MAX_BYTES = env_int("EXECUTION_INPUTS_MAX_BYTES", 64 * 1024)
EXECUTION_CONFIG_MAX_BYTES = env_int("EXECUTION_CONFIG_MAX_BYTES", 64 * 1024)
EXECUTION_JSON_MAX_DEPTH = env_int("EXECUTION_JSON_MAX_DEPTH", 32)
# A request body larger than this is refused with 413 before it is parsed.
DATA_UPLOAD_MAX_MEMORY_SIZE = env_int("DJANGO_DATA_UPLOAD_MAX_MEMORY_SIZE", 256 * 1024)
# Largest WebSocket message a client may send (clients have nothing to send).
WEBSOCKET_MAX_MESSAGE_BYTES = env_int("WEBSOCKET_MAX_MESSAGE_BYTES", 4096)

# --- Webhooks ----------------------------------------------------------------------
# The HMAC key of X-Signature-256, and whether callback_url may be a private address.
WEBHOOK_SECRET = os.environ.get("WEBHOOK_SECRET", "")
WEBHOOK_ALLOW_PRIVATE = env_bool("WEBHOOK_ALLOW_PRIVATE")

# --- Operations (docs/operations/metrics.md) ---------------------------------------------
# Bearer token of a scraper on /metrics. (PROMETHEUS_MULTIPROC_DIR is read by prometheus_client.)
METRICS_TOKEN = os.environ.get("METRICS_TOKEN", "")
# How long /readyz waits for Redis to answer PING.
READINESS_TIMEOUT_SECONDS = env_float("READINESS_TIMEOUT_SECONDS", 1)

# --- Serving (manage.py serve; docs/operations/deployment.md) -------------------------
# A draining process spreads its closes (1012) and stream ends evenly over this window.
SERVE_DRAIN_SPREAD_SECONDS = env_float("SERVE_DRAIN_SPREAD_SECONDS", 1)
# How long a process may drain (SIGTERM, or the old generation of a reload) before serve kills it.
SERVE_GRACE_SECONDS = env_float("SERVE_GRACE_SECONDS", 30)

# --- Throttling ----------------------------------------------------------------------
# Rates like "120/min"; THROTTLE_<SCOPE>_RATE sets each, empty disables it.
EXECUTION_THROTTLE_RATES = {
    "submit": os.environ.get("THROTTLE_SUBMIT_RATE", "120/min") or None,
    "cancel": os.environ.get("THROTTLE_CANCEL_RATE", "120/min") or None,
    "token": os.environ.get("THROTTLE_TOKEN_RATE", "20/min") or None,
    "login": os.environ.get("THROTTLE_LOGIN_RATE", "10/min") or None,
}
# Prefixes every cache key (throttle counters), so that several sites may share a Redis.
CACHE_KEY_PREFIX = os.environ.get("CACHE_KEY_PREFIX", "executions")
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": CACHE_KEY_PREFIX,
    }
}

# --- REST framework ------------------------------------------------------------------
REST_FRAMEWORK: dict[str, Any] = {
    # Token first: an unauthenticated request then gets 401 with
    # WWW-Authenticate: Token rather than the session's 403.
    "DEFAULT_AUTHENTICATION_CLASSES": [
        # DRF's TokenAuthentication through a short per-process cache (AUTH_CACHE_SECONDS).
        "core.authentication.CachedTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["core.parsers.SafeJSONParser"],
    "EXCEPTION_HANDLER": "executions.api.errors.exception_handler",
    "DEFAULT_SCHEMA_CLASS": "executions.api.schema.ApiAutoSchema",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}
if DEBUG:
    REST_FRAMEWORK["DEFAULT_RENDERER_CLASSES"].append("rest_framework.renderers.BrowsableAPIRenderer")

SPECTACULAR_SETTINGS = {
    "TITLE": "Executions API",
    "DESCRIPTION": (
        "Start pipelines and agents, follow their progress. Every error answer is JSON with a "
        "`detail` string. Authenticate with `Authorization: Token <key>` (from `POST "
        "/api/v1/auth/token`) or a browser session (unsafe methods then need the CSRF token). "
        "Live progress: `WS /api/v1/executions/{execution_id}/progress/ws`, or Server-Sent Events at "
        "`GET /api/v1/executions/{execution_id}/progress/stream` (see docs/protocol/ in the repository)."
    ),
    "VERSION": "1.0.0",
    # OpenAPI 3.1: a nullable value is a JSON Schema union with {"type": "null"}. Under
    # 3.0.3 a nullable object came out as `allOf: [$ref]` + `nullable: true` without a
    # `type`, which strict validators ignore: they rejected the nulls we really send
    # (tests/executions/test_api_responses.py validates real answers).
    "OAS_VERSION": "3.1.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # The schema describes the API, which requires authentication (the docs page
    # redirects to the login page instead, see config/urls.py).
    "SERVE_PERMISSIONS": ["rest_framework.permissions.IsAuthenticated"],
    "PREPROCESSING_HOOKS": ["executions.api.schema.strip_trailing_slashes"],
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        # Before describe_execution_ids, which describes its execution_id parameter too.
        "progress.schema.document_progress_stream",
        "executions.api.schema.describe_execution_ids",
    ],
    # Component names for the choice sets (drf-spectacular would otherwise name the
    # sets that share a field name with hashes).
    "ENUM_NAME_OVERRIDES": {
        "ExecutionStatusEnum": "executions.models.ExecutionStatus",
        "ExecutionTypeEnum": "executions.models.ExecutionType",
        "TerminalStatusEnum": "executions.api.serializers.TERMINAL_TYPES",
        "PendingStatusEnum": ["pending"],
        "RunningStatusEnum": ["running"],
        "CancelledStatusEnum": ["cancelled"],
        "StartedFrameTypeEnum": ["started"],
        "ProgressFrameTypeEnum": ["progress"],
        "StatusFrameTypeEnum": ["status"],
        "ErrorFrameTypeEnum": ["error"],
    },
}

# --- Security ----------------------------------------------------------------------------
# `manage.py check --deploy` reports only what docs/operations/deployment.md calls deliberate.
# HTTPS-only session and CSRF cookies unless debug is on or DJANGO_SECURE_COOKIES=0.
SESSION_COOKIE_SECURE = env_bool("DJANGO_SECURE_COOKIES", default=not DEBUG)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
SECURE_SSL_REDIRECT = env_bool("DJANGO_SECURE_SSL_REDIRECT")
SECURE_HSTS_SECONDS = env_int("DJANGO_SECURE_HSTS_SECONDS", 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS")
SECURE_HSTS_PRELOAD = env_bool("DJANGO_SECURE_HSTS_PRELOAD")
# One variable for the two settings a TLS-terminating proxy needs (DJANGO_BEHIND_PROXY).
if env_bool("DJANGO_BEHIND_PROXY"):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    USE_X_FORWARDED_HOST = True
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS", "")
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True

# The root logger's level (the console handler of every process).
LOG_LEVEL = os.environ.get("LOG_LEVEL", "INFO")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {"django.channels.server": {"level": "WARNING"}},
}
