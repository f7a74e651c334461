"""settings_jobs_without on psycopg2: no pool (Django's needs psycopg 3), a new connection per task as Celery does."""

import os
import sys

# Django's backend prefers psycopg 3 when it is importable; hide it so psycopg2 is used.
sys.modules["psycopg"] = None  # type: ignore[assignment]

from forkhooks.demo.site.database import django_database  # noqa: E402

from .settings_jobs_without import *  # noqa: E402, F403

DATABASES = {"default": django_database(os.environ.get("FORKHOOKS_DSN", ""))}
