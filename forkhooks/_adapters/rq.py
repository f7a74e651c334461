"""The RQ adapter, public as ``forkhooks.rq``: worker classes for ``rq worker -w`` and ``rqworker --worker-class``."""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
from contextlib import nullcontext
from typing import Any

from .._tools.appname import Role

try:
    import rq
except ImportError:
    raise ImportError("forkhooks.rq needs RQ in this environment (pip install 'forkhooks[rq]')") from None

from .. import _core
from . import forks
from .cancel import cancel_queries_of, end_backends_after_death
from .lifecycle import child_started, close_then_die, one_job

__all__ = ["ForkhooksWorkerMixin", "Worker"]

log = logging.getLogger("forkhooks.rq")

ROLE = Role.RQ_HORSE  # a horse names its connections <prefix>:rq-horse:<pid>

# SpawnWorker (rq >= 2.2) starts each horse as a new interpreter; an empty tuple matches no worker.
_SPAWN: Any = getattr(rq.worker, "SpawnWorker", ())


class ForkhooksWorkerMixin:
    """Put first in the bases of a custom worker class: ``class MyWorker(ForkhooksWorkerMixin, rq.Worker)``.

    The worker closes its connections and pools before forking each work
    horse; the horse discards what it inherited at fork (it opens its own on
    first use and warms nothing: it runs one job), and closes them, cancelling
    a query the job left running (a job timeout), before RQ ends it with
    os._exit. When the worker kills a horse (cold shutdown, a stop-job
    command, a horse stuck past its timeout) it cancels the horse's queries
    first; a horse sent SIGTERM (systemd stopping every process of the
    service) cancels and closes before it dies of the signal; a horse killed
    by anything else has its backends ended by the worker once it is gone.
    """

    def work(self, *args: Any, **kwargs: Any) -> Any:
        """Work; first, in a worker forked by RQ's WorkerPool, discard what it inherited from the pool's process."""
        if multiprocessing.parent_process() is not None:
            # Forked by a multiprocessing parent (WorkerPool): its connections are the parent's. Dropped
            # here without a byte sent, the closes before each horse reach only this worker's own.
            child_started(log=getattr(self, "log", log), who=Role.RQ_WORKER)
        return super().work(*args, **kwargs)  # type: ignore[misc]

    def fork_work_horse(self, job: Any, queue: Any) -> Any:
        """Close this worker's connections and pools, then fork the horse (which discards at fork)."""
        logger = getattr(self, "log", log)  # RQ's logger: its handlers are the ones configured
        try:
            forks.install()  # Django is loaded by now: watch() sees every wrapper; idempotent
        except Exception:
            logger.exception("forkhooks: installing the at-fork discard failed; continuing")
        if not isinstance(self, _SPAWN):  # a spawned horse inherits nothing
            _core.close(log=logger, who=Role.RQ_WORKER)
        return super().fork_work_horse(job, queue)  # type: ignore[misc]

    def setup_work_horse_signals(self) -> None:
        """RQ's horse signals, then SIGTERM closes (cancelling the running query) before the horse dies of it."""
        super().setup_work_horse_signals()  # type: ignore[misc]
        if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:  # a subclass that ignores SIGTERM keeps its choice
            # The horse's SIGTERM stays fatal, as RQ makes it; through the logger RQ gives its horses.
            signal.signal(signal.SIGTERM, close_then_die(ROLE, logging.getLogger("rq.worker")))

    def perform_job(self, job: Any, queue: Any, *args: Any, **kwargs: Any) -> Any:
        """Run the job; in a work horse, then close its connections and pools, cancelling a running query."""
        # Only a horse: a SimpleWorker runs jobs in the worker itself and keeps its connections.
        horse = getattr(self, "_is_horse", False)
        with one_job(ROLE, getattr(self, "log", log)) if horse else nullcontext():
            return super().perform_job(job, queue, *args, **kwargs)  # type: ignore[misc]

    def kill_horse(self, *args: Any, **kwargs: Any) -> Any:
        """Cancel the horse's running queries, then let RQ kill it (SIGKILL: the horse cannot do it itself)."""
        pid = getattr(self, "horse_pid", 0)
        if pid:
            try:
                n = cancel_queries_of(int(pid), ROLE)
                getattr(self, "log", log).info("forkhooks: cancelled %d running query(ies) of horse %s", n, pid)
            except Exception:
                getattr(self, "log", log).exception("forkhooks: cancelling horse %s's queries failed; continuing", pid)
        return super().kill_horse(*args, **kwargs)  # type: ignore[misc]

    def handle_work_horse_killed(self, job: Any, retpid: Any, ret_val: Any, rusage: Any) -> Any:
        """A horse died without finishing its job (the OOM killer, ``kill -9``): end its backends, then RQ's handling.

        A horse killed that way runs no Python, and its query goes on in the
        server, holding its locks and a connection slot.
        """
        if retpid:
            end_backends_after_death(int(retpid), "horse", getattr(self, "log", log))
        return super().handle_work_horse_killed(job, retpid, ret_val, rusage)  # type: ignore[misc]


class Worker(ForkhooksWorkerMixin, rq.Worker):
    """rq.Worker made fork-safe: ``rq worker -w forkhooks.rq.Worker`` or ``rqworker --worker-class ...``."""


def fork_safe(worker_class: type) -> type:
    """`worker_class` with ForkhooksWorkerMixin first in its bases (itself if it has the mixin already)."""
    if issubclass(worker_class, ForkhooksWorkerMixin):
        return worker_class
    return type(worker_class.__name__, (ForkhooksWorkerMixin, worker_class), {"__module__": worker_class.__module__})


_pool_patched = False


def patch_worker_pool() -> None:
    """Make RQ's WorkerPool (django-rq's ``rqworker-pool``) fork-safe, for ``forkhooks.django`` in INSTALLED_APPS.

    - The pool's main process closes its connections and pools before it forks
      each worker (django-rq closes its connections first, but a pooled one goes
      back to its pool, whose sockets every worker would inherit): it holds no
      backend while it supervises.
    - Its workers get forkhooks.rq's worker behaviour whatever their class: a
      horse per job on its own connections, a killed job's query cancelled.
    - A worker that died without running Python has its backends ended.
    """
    global _pool_patched
    if _pool_patched:
        return
    _pool_patched = True
    from rq.worker_pool import WorkerPool

    forks.install()  # each worker discards what it inherited, at fork
    init, start_worker, handle_dead_worker = WorkerPool.__init__, WorkerPool.start_worker, WorkerPool.handle_dead_worker

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        self.worker_class = fork_safe(self.worker_class)
        self._forkhooks_owner = os.getpid()

    def start_worker_closing_first(self: Any, *args: Any, **kwargs: Any) -> Any:
        if getattr(self, "_forkhooks_owner", None) == os.getpid():
            _core.close(log=self.log, who=Role.RQ_POOL)
        return start_worker(self, *args, **kwargs)

    def handle_dead_worker_ending_backends(self: Any, worker_data: Any) -> Any:
        exitcode = getattr(getattr(worker_data, "process", None), "exitcode", None)
        if exitcode is not None and exitcode < 0:  # killed by a signal: it closed nothing
            end_backends_after_death(int(worker_data.pid), "worker", self.log)
        return handle_dead_worker(self, worker_data)

    WorkerPool.__init__ = __init__
    WorkerPool.start_worker = start_worker_closing_first
    WorkerPool.handle_dead_worker = handle_dead_worker_ending_backends
