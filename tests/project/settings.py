"""forkhooks.django installed, psycopg 3, one persistent connection per thread (CONN_MAX_AGE=None)."""

import os

from forkhooks.demo.site.database import django_database

SECRET_KEY = "test-only-not-secret"
USE_TZ = True
INSTALLED_APPS = ["forkhooks.django"]
DATABASES = {"default": django_database(os.environ.get("FORKHOOKS_DSN", ""), CONN_MAX_AGE=None)}
