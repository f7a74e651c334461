"""The demo's settings, plus the switches the tests and the benchmark turn (never read by `forkhooks demo`)."""

import json
import os

from forkhooks.demo.site.database import django_database
from forkhooks.demo.site.settings import *  # noqa: F403

ROOT_URLCONF = "tests.testsite.urls"
# FORKHOOKS_EXAMPLE_APPS=forkhooks.django adds apps (comma-separated): the at-fork discard for
# views that fork (tests/test_faults.py). Default: none.
INSTALLED_APPS: list[str] = [a for a in os.environ.get("FORKHOOKS_EXAMPLE_APPS", "").split(",") if a]

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
        CONN_HEALTH_CHECKS=True,
    )
}
