"""django-tasks-scheduler's worker on the test Redis: Django's pool (min 1, max 4), forkhooks.django installed.

The process that runs `scheduler_worker` holds a pooled session when it forks (a start-up query).
"""

import os

from .settings_jobs import *  # noqa: F403

INSTALLED_APPS = ["forkhooks.django", "django.contrib.contenttypes", "scheduler", "tests.project.startup.StartupCheck"]
SCHEDULER_QUEUES = {"default": {"UNIX_SOCKET_PATH": os.environ.get("FORKHOOKS_TEST_REDIS", ""), "DB": 0}}
# The worker's log on stderr, forkhooks' lines included (scheduler.forkhooks): the tests read it.
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"scheduler": {"handlers": ["console"], "level": "INFO", "propagate": False}},
}
