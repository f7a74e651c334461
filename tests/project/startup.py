"""A start-up check as projects have one: the process that sets Django up runs a query and keeps its session.

Listed in INSTALLED_APPS by the job-runner settings whose main process forks its workers after
setup (RQ's WorkerPool): the main process holds a pooled session at fork, and checks it at exit.
"""

from __future__ import annotations

import atexit
import os

from django.apps import AppConfig


class StartupCheck(AppConfig):
    """Query at ready(), check the same session when the process exits."""

    name = "tests.project.startup"
    label = "startup_check"

    def ready(self) -> None:
        from . import jobs

        jobs.parent_holds_session()
        main = os.getpid()
        atexit.register(lambda: os.getpid() == main and jobs.parent_checks_session())
