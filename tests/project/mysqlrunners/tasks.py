"""Huey's task (run_huey autodiscovers this module); django-q2 runs tests.project.mysqljobs.echo by name."""

from __future__ import annotations

from huey.contrib.djhuey import HUEY, db_task

from tests.project import mysqljobs

from .apps import worker_ready


@db_task(name="echo")
def echo(tag: str) -> None:
    """Answer `tag` through MySQL, with the session's CONNECTION_ID()."""
    mysqljobs.echo(tag)


@HUEY.on_startup()
def _ready() -> None:
    worker_ready()
