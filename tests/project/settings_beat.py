"""Celery beat with django-celery-beat's DatabaseScheduler: Django's pool (min 1, max 4), forkhooks.django installed."""

from .settings_jobs import *  # noqa: F403

INSTALLED_APPS = ["forkhooks.django", "django_celery_beat"]
