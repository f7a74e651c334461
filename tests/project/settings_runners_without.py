"""settings_runners without forkhooks.django: Huey's and django-q2's own handling only."""

from .settings_runners import *  # noqa: F403

INSTALLED_APPS = ["huey.contrib.djhuey", "django_q", "tests.project.runnerapp"]
