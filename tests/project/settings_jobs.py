"""Celery and RQ workers: Django's psycopg pool (min 1, max 4), forkhooks.django installed, django-rq."""

import os

from forkhooks.demo.site.database import django_database

SECRET_KEY = "test-only-not-secret"
USE_TZ = True
INSTALLED_APPS = ["forkhooks.django", "django_rq"]
# A short pool timeout: a control waiting on a broken pool fails in seconds, not minutes.
POOL = {"min_size": 1, "max_size": 4, "timeout": 5}
DATABASES = {"default": django_database(os.environ.get("FORKHOOKS_DSN", ""), pool=POOL)}
RQ_QUEUES = {"default": {"UNIX_SOCKET_PATH": os.environ.get("FORKHOOKS_TEST_REDIS", ""), "DB": 0}}
