"""The same as settings_jobs_pool, without forkhooks.django."""

from .settings_jobs_pool import *  # noqa: F403

INSTALLED_APPS = ["django_rq", "tests.project.startup.StartupCheck"]
