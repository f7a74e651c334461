"""RQ worker classes for the tests: the worker's main process holds a session, as a start-up check would.

``--worker-class tests.project.rqworkers.ForkhooksProbe`` is forkhooks.rq.Worker
with the probe (a custom class built on forkhooks' worker, as the README
shows); ``PlainProbe`` is rq.Worker with the same probe.
"""

from __future__ import annotations

from typing import Any

import rq

import forkhooks.rq

from . import jobs


class _Probe:
    def work(self, *args: Any, **kwargs: Any) -> Any:
        # django-rq's rqworker closed Django's connections just before: the session opened here is held at fork.
        jobs.parent_holds_session()
        try:
            return super().work(*args, **kwargs)  # type: ignore[misc]
        finally:
            jobs.parent_checks_session()


class ForkhooksProbe(_Probe, forkhooks.rq.Worker):
    """forkhooks.rq.Worker whose main process holds a pooled session across the horses' forks."""


class PlainProbe(_Probe, rq.Worker):
    """rq.Worker whose main process holds a pooled session across the horses' forks."""
