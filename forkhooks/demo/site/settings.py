"""Settings of the demo's project: Django pooling on PostgreSQL, from FORKHOOKS_DSN."""

import os

from forkhooks.demo.site.database import django_database

SECRET_KEY = "example-only-not-secret"
DEBUG = False
ALLOWED_HOSTS = ["*"]
ROOT_URLCONF = "forkhooks.demo.site.urls"
INSTALLED_APPS: list[str] = []
MIDDLEWARE = ["django.middleware.common.CommonMiddleware"]
USE_TZ = True

DATABASES = {
    "default": django_database(
        os.environ.get("FORKHOOKS_DSN", ""),
        pool={"min_size": 2, "max_size": 4, "timeout": 10},
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
