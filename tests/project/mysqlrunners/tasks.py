"""Huey's tasks (run_huey autodiscovers this module); django-q2 runs tests.project.mysqljobs.echo (and
tests.project.mysqlreap_jobs.locked) by name."""

from __future__ import annotations

from huey.contrib.djhuey import HUEY, db_task

from tests.project import mysqljobs, mysqlreap_jobs

from .apps import worker_ready


@db_task(name="echo")
def echo(tag: str) -> None:
    """Answer `tag` through MySQL, with the session's CONNECTION_ID()."""
    mysqljobs.echo(tag)


@db_task(name="locked")
def locked() -> None:
    """Wait on the row lock the MySQL reaping tests hold (tests/project/mysqlreap_jobs.py)."""
    mysqlreap_jobs.locked()


@HUEY.on_startup()
def _ready() -> None:
    worker_ready()
