"""The generated site's base settings, on PostgreSQL with Django's pool (FORKHOOKS_DSN), plus this app."""

import os

from mysite.settings.base import *  # noqa: F403
from mysite.settings.base import INSTALLED_APPS

from forkhooks.demo.site.database import django_database

SECRET_KEY = "wagtail-test-only-not-secret"
DEBUG = False
ALLOWED_HOSTS = ["*"]
INSTALLED_APPS = ["fhsite", *INSTALLED_APPS]
WAGTAILADMIN_BASE_URL = "http://localhost"
ROOT_URLCONF = "fhsite.urls"
# Served on a Unix socket, as behind a proxy: ASGI servers report no port there, and Wagtail's site
# lookup needs one, so the port comes from the proxy's header (the load sends X-Forwarded-Port: 80).
USE_X_FORWARDED_PORT = True

DATABASES = {
    "default": django_database(
        os.environ.get("FORKHOOKS_DSN", ""),
        pool={"min_size": 2, "max_size": int(os.environ.get("FORKHOOKS_WAGTAIL_POOL_MAX", "4")), "timeout": 10},
        CONN_HEALTH_CHECKS=True,
    )
}

# Logins in the load should cost connections, not 1M PBKDF2 rounds on a shared CPU.
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {
        "forkhooks": {"handlers": ["console"], "level": "INFO"},
        "django.request": {"handlers": ["console"], "level": "ERROR"},  # 500s' tracebacks in the server's log
    },
}
