"""RQ for the MySQL reaping tests: the main process sets Django up (as django-rq's rqworker does), then forks horses.

``-w tests.project.mysqlreap_rq.Worker``; the job is tests.project.mysqlreap_jobs.locked.
"""

from __future__ import annotations

import os

import django

import forkhooks.rq

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.project.mysqlreap_settings")
django.setup()


class Worker(forkhooks.rq.Worker):
    """forkhooks.rq.Worker in a process that loaded Django."""
