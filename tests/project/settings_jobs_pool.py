"""RQ's WorkerPool: settings_jobs (forkhooks.django, Django's pool) and a start-up query in the main process."""

from .settings_jobs import *  # noqa: F403
from .settings_jobs import INSTALLED_APPS

INSTALLED_APPS = [*INSTALLED_APPS, "tests.project.startup.StartupCheck"]
