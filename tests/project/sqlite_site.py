"""A one-file Django site on SQLite (WAL) for gunicorn: settings, URLs and views; the app is sqlite_wsgi.

FORKHOOKS_TEST_SQLITE names the database file. /echo?tag=T inserts one row with T and answers the
row it inserted, read back on the same connection.
"""

from __future__ import annotations

import os

from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import path

SECRET_KEY = "test-only-not-secret"
DEBUG = False
ALLOWED_HOSTS = ["*"]
ROOT_URLCONF = __name__
INSTALLED_APPS: list[str] = []
USE_TZ = True
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("FORKHOOKS_TEST_SQLITE", ""),
        "CONN_MAX_AGE": None,  # a persistent connection per process, as with the other databases
        # 4 workers writing at once: each waits for the write lock instead of failing with "database is locked".
        "OPTIONS": {"timeout": 30, "init_command": "PRAGMA journal_mode=WAL"},
    }
}


def health(request: HttpRequest) -> HttpResponse:
    """Readiness: answers without touching the database."""
    return HttpResponse("ok")


def echo(request: HttpRequest) -> JsonResponse:
    """Insert the caller's tag and answer the row just inserted."""
    tag = request.GET.get("tag", "")
    with connection.cursor() as cursor:
        cursor.execute("INSERT INTO writes (tag, pid) VALUES (%s, %s)", [tag, os.getpid()])
        cursor.execute("SELECT tag FROM writes WHERE id = %s", [cursor.lastrowid])
        (got,) = cursor.fetchone()
    return JsonResponse({"tag": got, "pid": os.getpid()})


urlpatterns = [path("health", health), path("echo", echo)]
