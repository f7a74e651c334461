"""Probes for the job runners' tests: the supervisor's session, and each worker's start.

With FORKHOOKS_TEST_PARENT=1 the process that runs the command (Huey's
consumer, django-q2's qcluster process) opens a pooled connection at start,
as a project's start-up check does, and checks its session again once its
children are gone (a multiprocessing finalizer run after it joined them).
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


class RunnerAppConfig(AppConfig):
    name = "tests.project.runnerapp"
    label = "runnerapp"

    def ready(self) -> None:
        from multiprocessing import util

        from django_q.signals import post_spawn

        from tests.project import jobs

        post_spawn.connect(worker_ready, weak=False, dispatch_uid="runnerapp.ready")
        if os.environ.get("FORKHOOKS_TEST_PARENT") == "1":
            jobs.parent_holds_session()
            # Negative priority: multiprocessing runs it at exit after joining the children.
            util.Finalize(None, jobs.parent_checks_session, exitpriority=-1)
