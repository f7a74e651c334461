"""The same as settings_jobs, without forkhooks.django: Celery's and RQ's own handling only."""

from .settings_jobs import *  # noqa: F403

INSTALLED_APPS = ["django_rq"]
