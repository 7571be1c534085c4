from __future__ import annotations

import secrets
from pathlib import Path

from zyra.env import ConfigError, database_from_url, dev_secret_file, env_bool, env_int, env_list, env_str

BASE_DIR = Path(__file__).resolve().parent.parent.parent
VAR_DIR = Path(env_str("ZYRA_VAR_DIR", str(BASE_DIR / "var")))

DEBUG = env_bool("DJANGO_DEBUG", False)
SECRET_KEY = env_str("SECRET_KEY", "")
if not SECRET_KEY:
    if env_str("DATABASE_URL", ""):
        raise ConfigError("SECRET_KEY is not set: a deployment with DATABASE_URL must provide it in the environment")
    # Embedded default only: a random key generated once into var/ (never a literal in the code).
    SECRET_KEY = dev_secret_file(VAR_DIR / "dev-secret-key", lambda: secrets.token_urlsafe(50))
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]", "testserver"])

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "channels",
    "workflows",
    "executions",
    "secrets_vault",
    "triggers",
]

MIDDLEWARE = [
    "zyra.middleware.RequestSizeLimitMiddleware",  # 413 in the one error shape, before anything reads the body
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "zyra.urls"
WSGI_APPLICATION = None
ASGI_APPLICATION = "zyra.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "zyra" / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]

_db_url = env_str("DATABASE_URL", "")
if _db_url:
    DATABASES = {"default": database_from_url(_db_url)}
else:
    VAR_DIR.mkdir(parents=True, exist_ok=True)
    DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": str(VAR_DIR / "zyra.sqlite3")}}

_db = DATABASES["default"]
if _db["ENGINE"] == "django.db.backends.sqlite3":
    # IMMEDIATE transactions take the write lock up front, so two writers wait
    # for each other instead of failing with "database is locked" mid-transaction.
    _db["OPTIONS"] = {"transaction_mode": "IMMEDIATE", "timeout": 30, "init_command": "PRAGMA journal_mode=WAL;"}
else:
    # Persistent connections with health checks: a worker thread keeps one
    # connection; see README "Connections" for the arithmetic.
    _db["CONN_MAX_AGE"] = env_int("DB_CONN_MAX_AGE", 60)
    _db["CONN_HEALTH_CHECKS"] = True
    _opts = dict(_db.get("OPTIONS") or {})  # type: ignore[call-overload]
    _opts.setdefault("connect_timeout", 5)
    _db["OPTIONS"] = _opts
    # DB_POOL_MAX > 0: Django's psycopg pool, one per process, instead of persistent
    # connections. Use it for the ASGI web process, where each request runs in its own
    # thread and a persistent connection per thread piles up (docs/operations.md).
    if env_int("DB_POOL_MAX", 0) > 0:
        _db["CONN_MAX_AGE"] = 0
        _opts["pool"] = {
            "min_size": env_int("DB_POOL_MIN", 0),
            "max_size": env_int("DB_POOL_MAX", 0),
            "timeout": env_int("DB_POOL_TIMEOUT_S", 30),
        }
    _db["TEST"] = {"NAME": env_str("ZYRA_TEST_DB", "zyra_test")}
if _db["ENGINE"] not in {"django.db.backends.sqlite3", "django.db.backends.postgresql"}:
    raise ConfigError("only PostgreSQL and SQLite are supported")

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

STATIC_URL = "/static/"
STATIC_ROOT = VAR_DIR / "static"

DATA_UPLOAD_MAX_MEMORY_SIZE = env_int("ZYRA_MAX_REQUEST_BYTES", 5 * 1024 * 1024)

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "zyra.auth.FastTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PAGINATION_CLASS": "zyra.api.Pagination",
    "PAGE_SIZE": 50,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "zyra.api.exception_handler",
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    # Rejects (4xx, with a pointer) NULs, lone surrogates, non-finite numbers and deep nesting,
    # which the stock parser lets through to fail later as a 500.
    "DEFAULT_PARSER_CLASSES": ["zyra.parsers.StrictJSONParser"],
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Zyra API",
    "DESCRIPTION": "Workflow execution backend",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
}

LOG_LEVEL = env_str("ZYRA_LOG_LEVEL", "INFO")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"kv": {"()": "zyra.logging.KeyValueFormatter"}},
    "filters": {"redact": {"()": "zyra.logging.RedactFilter"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "kv", "filters": ["redact"]}},
    "root": {"handlers": ["console"], "level": "WARNING"},
    "loggers": {
        "zyra": {"level": LOG_LEVEL},
        "workflows": {"level": LOG_LEVEL},
        "executions": {"level": LOG_LEVEL},
        "secrets_vault": {"level": LOG_LEVEL},
    },
}
