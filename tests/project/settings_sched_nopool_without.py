"""settings_sched_without with no pool (a connection per job, as django-tasks-scheduler works without one)."""

import os

from .settings_sched_without import *  # noqa: F403
from .settings_sched_without import django_database

DATABASES = {"default": django_database(os.environ.get("FORKHOOKS_DSN", ""))}
