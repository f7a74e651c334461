"""A Celery app for the MySQL reaping tests, with forkhooks.celery: the stuck job as a task, and under a time limit."""

from __future__ import annotations

import os

from celery import Celery, signals

import forkhooks.celery  # noqa: F401  (the one line a project adds)

from . import jobs
from .mysqlreap_jobs import locked

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.project.mysqlreap_settings")

app = Celery("forkhooks-mysql-reap", broker=f"redis+socket://{os.environ.get('FORKHOOKS_TEST_REDIS', '')}")
app.conf.update(broker_connection_retry_on_startup=True, task_ignore_result=True, worker_prefetch_multiplier=1)


@app.task(name="locked")
def locked_task() -> None:
    """locked() as a Celery task."""
    locked()


@app.task(name="locked_limited", time_limit=2)
def locked_limited() -> None:
    """locked() under a 2 s hard time limit."""
    locked()


@signals.worker_ready.connect
def _ready(**kwargs: object) -> None:
    jobs.client().set("forkhooks:ready", os.getpid())
