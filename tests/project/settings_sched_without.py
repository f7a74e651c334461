"""settings_sched without forkhooks.django: django-tasks-scheduler's own handling only."""

from .settings_sched import *  # noqa: F403

INSTALLED_APPS = ["django.contrib.contenttypes", "scheduler", "tests.project.startup.StartupCheck"]
