"""Huey's tasks (run_huey autodiscovers this module); django-q2 runs tests.project.jobs' functions by name."""

from __future__ import annotations

from huey.contrib.djhuey import HUEY, db_task

from tests.project import jobs

from .apps import worker_ready


@db_task(name="echo")
def echo(tag: str) -> None:
    """Answer `tag` through PostgreSQL."""
    jobs.echo(tag)


@db_task(name="slow")
def slow(seconds: float) -> None:
    """A long query: only a kill or a stop ends the task."""
    jobs.slow(seconds)


@HUEY.on_startup()
def _ready() -> None:
    worker_ready()
