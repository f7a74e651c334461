"""Probes for the MySQL job-runner tests: each worker's start, and the supervisor's own session.

With FORKHOOKS_TEST_PARENT=1 the process that runs the command (Huey's consumer,
django-q2's qcluster process) runs a query at start and keeps the connection
(CONN_MAX_AGE=None), as a project's start-up check leaves it, and checks its
session again once its children are gone (a multiprocessing finalizer run after
it joined them).
"""

from __future__ import annotations

import os
from typing import Any

from django.apps import AppConfig

READY = "forkhooks:ready"  # one row per worker that started: {"pid": ...}


def worker_ready(**kwargs: Any) -> None:
    """A worker started (Huey's startup hook, django-q2's post_spawn): say so, with its pid."""
    from tests.project import jobs

    jobs.push(READY, {"pid": os.getpid()})


def parent(when: str) -> None:
    """The supervisor's session now ("before" the forks, "after" its children are gone), or the error."""
    from tests.project import jobs, mysqljobs

    try:
        jobs.push(jobs.PARENT, {"when": when, "backend": mysqljobs.session(), "pid": os.getpid()})
    except Exception as exc:
        jobs.push(jobs.PARENT, {"when": when, "error": f"{type(exc).__name__}: {exc}"[:200], "pid": os.getpid()})


class MySQLRunnersConfig(AppConfig):
    name = "tests.project.mysqlrunners"
    label = "mysqlrunners"

    def ready(self) -> None:
        from multiprocessing import util

        from django_q.signals import post_spawn

        post_spawn.connect(worker_ready, weak=False, dispatch_uid="mysqlrunners.ready")
        if os.environ.get("FORKHOOKS_TEST_PARENT") == "1":
            parent("before")  # the connection stays open: CONN_MAX_AGE=None
            # Negative priority: multiprocessing runs it at exit after joining the children.
            util.Finalize(None, parent, args=("after",), exitpriority=-1)
