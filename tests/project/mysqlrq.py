"""RQ on MySQL for the tests: the echo job, and worker classes whose main process holds a session across the forks.

``-w tests.project.mysqlrq.ForkhooksProbe`` is forkhooks.rq.Worker with the probe;
``PlainProbe`` is rq.Worker with the same probe. Answers go to Redis as in tests/project/jobs.py.
"""

from __future__ import annotations

import os
from typing import Any

import django
import rq

import forkhooks.rq

from . import jobs
from .mysqljobs import echo, session

__all__ = ["ForkhooksProbe", "PlainProbe", "echo"]

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.project.mysqlsite.settings")
django.setup()


class _Probe:
    def work(self, *args: Any, **kwargs: Any) -> Any:
        # The main process holds a session when it starts working, as after a start-up check.
        try:
            jobs.push(jobs.PARENT, {"when": "before", "backend": session(), "pid": os.getpid()})
        except Exception as exc:
            jobs.push(jobs.PARENT, {"when": "before", "error": f"{type(exc).__name__}: {exc}"[:200]})
        try:
            return super().work(*args, **kwargs)  # type: ignore[misc]
        finally:
            try:
                jobs.push(jobs.PARENT, {"when": "after", "backend": session(), "pid": os.getpid()})
            except Exception as exc:
                jobs.push(jobs.PARENT, {"when": "after", "error": f"{type(exc).__name__}: {exc}"[:200]})


class ForkhooksProbe(_Probe, forkhooks.rq.Worker):
    """forkhooks.rq.Worker whose main process holds a MySQL session across the horses' forks."""


class PlainProbe(_Probe, rq.Worker):
    """rq.Worker whose main process holds a MySQL session across the horses' forks."""
