"""settings_beat without forkhooks.django: Celery's and django-celery-beat's own handling only."""

from .settings_beat import *  # noqa: F403

INSTALLED_APPS = ["django_celery_beat"]
