"""The RQ adapter, public as ``forkhooks.rq``: worker classes for ``rq worker -w`` and ``rqworker --worker-class``."""

from __future__ import annotations

import logging
from typing import Any

import rq

from .. import _core
from . import forks

__all__ = ["ForkhooksWorkerMixin", "Worker"]

log = logging.getLogger("forkhooks.rq")


class ForkhooksWorkerMixin:
    """Put first in the bases of a custom worker class: ``class MyWorker(ForkhooksWorkerMixin, rq.Worker)``.

    The worker closes its connections and pools before forking each work
    horse; the horse discards what it inherited at fork (it opens its own on
    first use and warms nothing: it runs one job), and closes them, cancelling
    a query the job left running (a job timeout), before RQ ends it with
    os._exit.
    """

    def fork_work_horse(self, job: Any, queue: Any) -> Any:
        """Close this worker's connections and pools, then fork the horse (which discards at fork)."""
        try:
            forks.install()  # Django is loaded by now: watch() sees every wrapper; idempotent
        except Exception:
            log.exception("forkhooks: installing the at-fork discard failed; continuing")
        if not isinstance(self, rq.worker.SpawnWorker):  # a spawned horse inherits nothing
            _core.close(log=log, who="rq worker")
        return super().fork_work_horse(job, queue)  # type: ignore[misc]

    def perform_job(self, job: Any, queue: Any, *args: Any, **kwargs: Any) -> Any:
        """Run the job; in a work horse, then close its connections and pools, cancelling a running query."""
        try:
            return super().perform_job(job, queue, *args, **kwargs)  # type: ignore[misc]
        finally:
            # Only a horse: a SimpleWorker runs jobs in the worker itself and keeps its connections.
            if getattr(self, "_is_horse", False):
                _core.close(log=log, who="rq horse")


class Worker(ForkhooksWorkerMixin, rq.Worker):
    """rq.Worker made fork-safe: ``rq worker -w forkhooks.rq.Worker`` or ``rqworker --worker-class ...``."""
