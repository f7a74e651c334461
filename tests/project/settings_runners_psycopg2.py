"""settings_runners on psycopg2 (no pool: Django's needs psycopg 3); FORKHOOKS_TEST_APP=0 drops forkhooks.django."""

import os
import sys

# Django's backend prefers psycopg 3 when it is importable; hide it so psycopg2 is used.
sys.modules["psycopg"] = None  # type: ignore[assignment]

from forkhooks.demo.site.database import django_database  # noqa: E402

from .settings_runners import *  # noqa: E402, F403

DATABASES = {"default": django_database(os.environ.get("FORKHOOKS_DSN", ""))}
if os.environ.get("FORKHOOKS_TEST_APP") == "0":
    INSTALLED_APPS = ["huey.contrib.djhuey", "django_q", "tests.project.runnerapp"]
