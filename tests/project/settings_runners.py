"""Huey (run_huey) and django-q2 (qcluster) on the test Redis: Django's pool (min 1, max 4), forkhooks.django installed.

FORKHOOKS_TEST_QUEUE names the test's queue (Huey's keys and django-q2's
cluster), FORKHOOKS_TEST_Q2_TIMEOUT django-q2's task timeout in seconds.
"""

import os

from .settings_jobs import *  # noqa: F403
from .settings_jobs import POOL, django_database

INSTALLED_APPS = ["forkhooks.django", "huey.contrib.djhuey", "django_q", "tests.project.runnerapp"]
DATABASES = {"default": django_database(os.environ.get("FORKHOOKS_DSN", ""), pool=POOL)}

_REDIS = os.environ.get("FORKHOOKS_TEST_REDIS", "")
_QUEUE = os.environ.get("FORKHOOKS_TEST_QUEUE", "forkhooks")
_TIMEOUT = int(os.environ.get("FORKHOOKS_TEST_Q2_TIMEOUT", "60"))

HUEY = {
    "huey_class": "huey.RedisHuey",
    "name": _QUEUE,
    "url": f"unix://{_REDIS}",
    "results": False,
    "immediate": False,
    "consumer": {"workers": 4, "worker_type": "process"},
}

Q_CLUSTER = {
    "name": _QUEUE,
    "workers": 4,
    "timeout": _TIMEOUT,
    "retry": _TIMEOUT + 60,
    "redis": {"unix_socket_path": _REDIS, "db": 0},
    "scheduler": False,
    "catch_up": False,
}
