"""Settings of the example project: Django pooling on PostgreSQL, from FORKHOOKS_DSN."""

import json
import os

from forkhooks.demo.site.database import django_database

SECRET_KEY = "example-only-not-secret"
DEBUG = False
ALLOWED_HOSTS = ["*"]
ROOT_URLCONF = "forkhooks.demo.site.urls"
# FORKHOOKS_EXAMPLE_APPS=forkhooks.django adds apps (comma-separated): the at-fork discard for
# views that fork (tests/test_faults.py). Default: none.
INSTALLED_APPS: list[str] = [a for a in os.environ.get("FORKHOOKS_EXAMPLE_APPS", "").split(",") if a]
MIDDLEWARE = ["django.middleware.common.CommonMiddleware"]
USE_TZ = True

# FORKHOOKS_EXAMPLE_POOL=0 turns Django's pool off (plain persistent wrappers).
POOL = os.environ.get("FORKHOOKS_EXAMPLE_POOL", "1") != "0"

DATABASES = {
    "default": django_database(
        os.environ.get("FORKHOOKS_DSN", ""),
        pool={
            "min_size": 2,
            "max_size": int(os.environ.get("FORKHOOKS_EXAMPLE_POOL_MAX", "4")),
            "timeout": 10,
            # Extra psycopg_pool options as JSON, e.g. '{"max_idle": 60}' (the tests pass bad ones too).
            **json.loads(os.environ.get("FORKHOOKS_EXAMPLE_POOL_OPTIONS", "{}")),
        }
        if POOL
        else None,
        CONN_MAX_AGE=int(os.environ.get("FORKHOOKS_EXAMPLE_CONN_MAX_AGE", "0")),
        # The benchmark (bench/) swaps in its getpid()-checking backend here.
        ENGINE=os.environ.get("FORKHOOKS_EXAMPLE_ENGINE", "django.db.backends.postgresql"),
        # With a pool, Django turns this into psycopg_pool's check=check_connection:
        # only live connections are handed out, so a server restart leaves no dead ones.
        CONN_HEALTH_CHECKS=True,
    )
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"forkhooks": {"handlers": ["console"], "level": "INFO"}},
}
