"""Django settings, derived from the validated ``config.yaml`` (see taskhub.config)."""

from __future__ import annotations

import os
import secrets
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from taskhub import config as taskhub_config
from taskhub.exceptions import ConfigError
from taskhub.logconfig import build_logging

BASE_DIR = Path(__file__).resolve().parent.parent

TASKHUB = taskhub_config.load()
# Scheduling decisions read the database server's clock (scheduling/engine/clock.py), not each host's.
TASKHUB_CLOCK = "database"


def _path(value: str) -> Path:
    """Resolve a configured path against the working directory, as the seed's relative paths mean."""
    return Path(value).expanduser().resolve()


STORAGE_DIR = _path(TASKHUB.storage.path)
REPORTS_DIR = _path(TASKHUB.storage.reports_path)
LOG_FILE = _path(TASKHUB.log.filename) if TASKHUB.log.filename else None


def _make_folder(key: str, folder: Path) -> None:
    """Create a configured folder; failure stops start-up with one line naming the key, not a traceback."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"{key}: cannot create the folder {folder} ({exc.strerror or exc})") from None


_make_folder("storage.path", STORAGE_DIR)
_make_folder("storage.reports_path", REPORTS_DIR)
if LOG_FILE is not None:
    _make_folder("log.filename", LOG_FILE.parent)


def _secret_key() -> str:
    """Return web.secret_key, or one generated once and kept (mode 600) under storage.path."""
    if TASKHUB.web.secret_key:
        return TASKHUB.web.secret_key
    key_file = STORAGE_DIR / ".secret_key"
    if not key_file.exists():
        # Web, worker and beat may start together on a fresh install: write the key whole under a
        # private name, then link it into place, which fails for all but the first process.
        draft = key_file.with_name(f".secret_key.{os.getpid()}")
        fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_urlsafe(50))
        try:
            os.link(draft, key_file)
        except FileExistsError:
            pass
        finally:
            draft.unlink(missing_ok=True)
    return key_file.read_text().strip()


SECRET_KEY = _secret_key()
DEBUG = TASKHUB.web.debug
ALLOWED_HOSTS = list(TASKHUB.web.allowed_hosts)

INSTALLED_APPS = [
    "taskhub.admin_site.TaskHubAdminConfig",  # django.contrib.admin with TaskHub's site (section order)
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_celery_beat",
    "scheduling",
    "integrations.jira",
    "integrations.confluence",
    "integrations.mattermost",
    "reporting",
    "axes",
    "taskhub",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "taskhub.middleware.RefuseNulInQueryMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Turns a locked-out login (admin, API login page) into a 429 page; keep it last (django-axes' rule).
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "taskhub.urls"
WSGI_APPLICATION = "taskhub.wsgi.application"

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


def _database(url: str) -> dict[str, Any]:
    """Translate database.url into a Django DATABASES entry."""
    parts = urlsplit(url)
    if parts.scheme == "sqlite":
        name = unquote(parts.path[1:] if parts.path.startswith("/") else parts.path) or "db.sqlite3"
        path = _path(name)
        _make_folder("database.url", path.parent)
        return {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": path,
            "OPTIONS": {
                # WAL lets readers run beside the one writer; IMMEDIATE makes every
                # transaction take the write lock up front, so concurrent dispatchers
                # serialise instead of failing with "database is locked" on upgrade.
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
                "transaction_mode": "IMMEDIATE",
                "timeout": 30,
            },
            # Tests run workers in other processes, so the test database must be a file.
            "TEST": {"NAME": str(path.with_name(f"test_{path.name}"))},
            # Kept across a worker's attempts as on PostgreSQL: opening one (with its PRAGMAs) was a
            # twentieth of an attempt's time on the embedded default.
            "CONN_MAX_AGE": 60,
            "CONN_HEALTH_CHECKS": True,
        }
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": unquote(parts.path.lstrip("/")) or "taskhub",
        "USER": unquote(parts.username or ""),
        "PASSWORD": unquote(parts.password or ""),
        "HOST": parts.hostname or "",
        "PORT": str(parts.port or ""),
        "CONN_MAX_AGE": 60,
        "CONN_HEALTH_CHECKS": True,
    }


DATABASES = {"default": _database(TASKHUB.database.url)}
if DATABASES["default"]["ENGINE"].endswith("postgresql") and TASKHUB.database.idle_transaction_timeout:
    # A worker cut off inside the dispatcher's transaction would hold its advisory lock, and so stop
    # every dispatcher, until TCP gave up (hours): the server ends such a session, which rolls it back.
    _idle_ms = TASKHUB.database.idle_transaction_timeout * 1000
    DATABASES["default"].setdefault("OPTIONS", {})["options"] = f"-c idle_in_transaction_session_timeout={_idle_ms}"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = TASKHUB.web.time_zone
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = STORAGE_DIR / "static"
# WhiteNoise warns on every request while this folder is missing (before any collectstatic).
STATIC_ROOT.mkdir(exist_ok=True)
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
# Serve admin and Swagger UI assets straight from the installed apps, so a fresh
# clone needs no collectstatic step before `make run`.
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = DEBUG

LOGIN_URL = "admin:login"

# --- Login throttling (django-axes, see taskhub/auth.py) ----------------------------------
# The lockout backend comes first: it refuses a locked-out user name or address before any password is checked.
AUTHENTICATION_BACKENDS = ["taskhub.auth.LockoutBackend", "django.contrib.auth.backends.ModelBackend"]
_security = TASKHUB.security
AXES_FAILURE_LIMIT = _security.login_failure_limit
AXES_COOLOFF_TIME = timedelta(minutes=_security.login_lockout_minutes)
# Each counts on its own: N failures for one user name (from any addresses) or from one address (any names).
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]
AXES_CLIENT_IP_CALLABLE = "taskhub.auth.client_ip"
LOGIN_CLIENT_IP_HEADER = _security.login_client_ip_header
AXES_RESET_ON_SUCCESS = False  # taskhub.auth clears only the user's own failures on success
AXES_ENABLE_ACCESS_FAILURE_LOG = True  # one admin-visible record per failure, marked when it locked out
AXES_LOCKOUT_CALLABLE = "taskhub.auth.lockout_response"

# --- HTTPS hardening: on when web.https says the site is served over TLS -----
if TASKHUB.web.https:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = True
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = 31536000
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    CSRF_TRUSTED_ORIGINS = [f"https://{host}" for host in ALLOWED_HOSTS if host != "*"]
SESSION_COOKIE_HTTPONLY = True
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True

# --- Email (reports): SMTP when email.smtp_host is set, else printed to the console -----
_email = TASKHUB.email
EMAIL_BACKEND = (
    "django.core.mail.backends.smtp.EmailBackend"
    if _email.smtp_host
    else "django.core.mail.backends.console.EmailBackend"
)
EMAIL_HOST = _email.smtp_host or "localhost"
EMAIL_PORT = _email.smtp_port
EMAIL_HOST_USER = _email.smtp_username
EMAIL_HOST_PASSWORD = _email.smtp_password
EMAIL_USE_TLS = _email.use_tls and not _email.use_ssl
EMAIL_USE_SSL = _email.use_ssl
EMAIL_TIMEOUT = _email.timeout
DEFAULT_FROM_EMAIL = SERVER_EMAIL = _email.from_address
EMAIL_SUBJECT_PREFIX = _email.subject_prefix

# --- Logging ------------------------------------------------------------------
LOGGING = build_logging(TASKHUB.log, LOG_FILE, secrets=TASKHUB.secret_values())

# --- Celery -------------------------------------------------------------------
CELERY_BROKER_URL = TASKHUB.broker.url
if CELERY_BROKER_URL.startswith("filesystem://"):
    from taskhub.broker import ALIAS as _FILESYSTEM_ALIAS

    # The same folders, through a transport whose writes are atomic (see taskhub/broker.py).
    CELERY_BROKER_URL = f"{_FILESYSTEM_ALIAS}://"
    _broker_dir = STORAGE_DIR / "broker"
    for _sub in ("queue", "processed", "control"):
        (_broker_dir / _sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir / "queue"),
        "data_folder_out": str(_broker_dir / "queue"),
        "processed_folder": str(_broker_dir / "processed"),
        # Exchange tables; kombu's default is ./control, which litters the working directory.
        "control_folder": str(_broker_dir / "control"),
        "store_processed": False,
        # Kombu polls the folder once a second by default: too slow for work
        # that should start within milliseconds of being queued.
        "polling_interval": 0.02,
    }
else:
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        # Redis: a message not acknowledged within this many seconds is redelivered;
        # it must exceed the longest task timeout or long tasks run twice.
        "visibility_timeout": TASKHUB.scheduler.max_timeout_seconds + 3600,
        "queue_order_strategy": "priority",
        "priority_steps": [0, 3, 6, 9],
    }
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_RESULT_BACKEND = None  # the database's TaskResult rows are the results
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# Celery's Django fixup closes the database connection before and after every task unless told to
# reuse it: a new PostgreSQL session per attempt (connect, then cold catalog caches) cost more than the
# attempt itself. Reuse it; taskhub/celery.py closes it when Django would (CONN_MAX_AGE, failed check).
CELERY_DB_REUSE_MAX = 10_000
# A broker restart must not kill running attempts (Celery 6 will default to cancelling them): the
# database, not the broker, records their outcome, and a redelivered message for a taken attempt is ignored.
CELERY_WORKER_CANCEL_LONG_RUNNING_TASKS_ON_CONNECTION_LOSS = False
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_DEFAULT_PRIORITY = 5
CELERY_TIMEZONE = "UTC"
CELERY_ENABLE_UTC = True
CELERY_BEAT_SCHEDULER = "scheduling.engine.beat:TaskHubScheduler"
# Beat wakes at least this often, so cron fires land within a second of their time.
CELERY_BEAT_MAX_LOOP_INTERVAL = 1
DJANGO_CELERY_BEAT_TZ_AWARE = True

# --- REST framework -------------------------------------------------------------
REST_FRAMEWORK = {
    # Token first: DRF answers anonymous requests with the first class's WWW-Authenticate
    # header, and only a class that has one turns "not logged in" into 401 instead of 403.
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "taskhub.auth.LockoutBasicAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_FILTER_BACKENDS": [
        "django_filters.rest_framework.DjangoFilterBackend",
        "rest_framework.filters.OrderingFilter",
        "rest_framework.filters.SearchFilter",
    ],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_THROTTLE_RATES": {"writes": TASKHUB.security.write_rate},
    "DEFAULT_PAGINATION_CLASS": "taskhub.pagination.BoundedPageNumberPagination",
    "PAGE_SIZE": 50,
    "EXCEPTION_HANDLER": "taskhub.api.exception_handler",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "TaskHub API",
    "DESCRIPTION": "Schedule, run and watch tasks around Jira and Confluence.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "scheduling.api.schema.strip_trailing_slashes",
        "scheduling.api.schema.add_error_responses",
    ],
    # One schema component per enum, however many serializers use it.
    "ENUM_NAME_OVERRIDES": {
        "TaskTypeEnum": "scheduling.models.TaskType",
        "TaskStatusEnum": "scheduling.models.TaskStatus",
        "AttemptStatusEnum": "scheduling.models.AttemptStatus",
        "OverlapPolicyEnum": "scheduling.models.OverlapPolicy",
    },
}

DATA_UPLOAD_MAX_MEMORY_SIZE = TASKHUB.security.max_request_bytes  # larger request bodies are refused (413)
