"""The Huey adapter: loaded by forkhooks.django in a process that runs ``run_huey``.

With ``-k process`` Huey's consumer forks its workers and its scheduler
(multiprocessing's fork context) and forks a replacement for each worker
that dies. Then:

- the consumer closes its Django connections and pools before each fork: it
  holds no backend while it supervises, and its children inherit none;
- each worker (the at-fork discard ran first) names its connections
  ``<prefix>:huey-worker:<pid>@<host>`` and warms its pools; Huey's
  ``db_task`` hands the connection back to the pool after each task
  (close_old_connections) and the pools live as long as the worker; the
  worker closes them when it stops;
- a worker that died of a signal (the OOM killer, ``kill -9``) has its
  backends ended by the consumer within its next 0.1 s loop, not at Huey's
  10 s health check;
- when the consumer interrupts its workers (SIGTERM, or a graceful stop past
  its shutdown timeout) it cancels their running queries first: a worker
  blocked in psycopg2 cannot act on the signal before its query returns.

``-k thread`` and ``-k greenlet`` fork nothing: this module does nothing there.
"""

from __future__ import annotations

import importlib
import logging
import os
from collections.abc import Callable
from typing import Any

from .. import _core
from .._tools import appname
from .._tools.appname import Role
from . import cancel as _cancel
from . import forks
from .patching import wrap_method

__all__ = ["ROLE"]

# A child of Huey's logger: its lines go wherever the consumer's go (run_huey sets that one up).
log = logging.getLogger("huey.forkhooks")

ROLE = Role.HUEY_WORKER  # a worker process names its connections <prefix>:huey-worker:<pid>@<host>

# The consumer's pid once it starts process workers: only its forks close first.
_consumer: int | None = None
# This process is one the consumer forked (a worker, the scheduler, a replacement).
_child = False
_connected = False


def _before_fork() -> None:
    if _consumer is not None and os.getpid() == _consumer:
        _core.close(log=log, who=Role.HUEY_CONSUMER)


def _after_fork_in_child() -> None:
    global _child, _consumer
    # Runs after forks.install()'s discard (at-fork callbacks run in the order registered).
    if _consumer is not None and os.getppid() == _consumer:
        _child = True
    _consumer = None  # a fork this child makes is not the consumer's


def _start(original: Callable[..., Any]) -> Callable[..., Any]:
    def start(self: Any) -> Any:
        global _consumer
        if getattr(self.environment, "forks", False):
            try:
                forks.install()  # Django is set up: watch() sees every wrapper from here on
                _consumer = os.getpid()
                appname.label(Role.HUEY_CONSUMER)
            except Exception:
                log.exception("forkhooks: setting up the Huey consumer failed; continuing without it")
        return original(self)

    return start


def _initialize(original: Callable[..., Any]) -> Callable[..., Any]:
    def initialize(self: Any) -> Any:
        if _child:
            try:
                appname.label(ROLE)
            except Exception:
                log.exception("forkhooks: naming this worker's connections failed; continuing")
        result = original(self)  # the project's startup hooks, named already
        if _child:
            _core.warm(log=log, who=Role.HUEY_WORKER)
        return result

    return initialize


def _shutdown(original: Callable[..., Any]) -> Callable[..., Any]:
    def shutdown(self: Any) -> Any:
        try:
            return original(self)  # the project's shutdown hooks may still use the database
        finally:
            if _child:  # multiprocessing then ends the process with os._exit: atexit never runs
                _core.close(log=log, who=Role.HUEY_WORKER)

    return shutdown


def _loop(original: Callable[..., Any]) -> Callable[..., Any]:
    def loop(self: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return original(self, *args, **kwargs)
        finally:
            if _consumer is not None and os.getpid() == _consumer:
                end_backends_of_killed(self)

    return loop


def end_backends_of_killed(consumer: Any) -> int:
    """In the consumer: end the backends of each child that died of a signal since the last look; how many."""
    ended = 0
    procs = [p for _, p in list(getattr(consumer, "worker_threads", ()))] + [getattr(consumer, "scheduler", None)]
    for proc in procs:
        if proc is None or getattr(proc, "_forkhooks_seen", False) or getattr(proc, "pid", None) is None:
            continue
        try:
            code = proc.exitcode  # reaps it if it is gone (waitpid WNOHANG): Huey later sees it dead, as before
        except Exception:
            continue
        if code is None:
            continue
        proc._forkhooks_seen = True
        if code >= 0:  # it returned (a stop, max tasks): it closed its own connections
            continue
        try:
            n = _cancel.end_backends_of(proc.pid, log=log)
            ended += n
            if n:
                log.info(
                    "forkhooks: huey process %s died (signal %d) without closing: ended %d backend(s)",
                    proc.pid,
                    -code,
                    n,
                )
        except Exception:
            log.exception("forkhooks: ending the backends of huey process %s failed; continuing", proc.pid)
    return ended


def _interrupt_workers(original: Callable[..., Any]) -> Callable[..., Any]:
    def interrupt_workers(self: Any) -> Any:
        if _consumer is not None and os.getpid() == _consumer:
            try:
                pids = [p.pid for _, p in list(self.worker_threads) if p.pid and p.is_alive()]
                n = sum(_cancel.cancel_queries_of(pid, ROLE, log=log) for pid in pids)
                log.info("forkhooks: interrupting the huey workers: cancelled %d running query(ies)", n)
            except Exception:
                log.exception("forkhooks: cancelling the huey workers' queries failed; continuing")
        return original(self)

    return interrupt_workers


def _connect() -> None:
    global _connected
    if _connected:
        return
    _connected = True
    consumer = importlib.import_module("huey.consumer")
    forks.install()  # the discard at fork, registered before ours: it runs first in the child
    os.register_at_fork(before=_before_fork, after_in_child=_after_fork_in_child)
    wrap_method(consumer.Consumer, "start", _start, log=log)
    wrap_method(consumer.Consumer, "loop", _loop, log=log)
    wrap_method(consumer.Consumer, "_interrupt_workers", _interrupt_workers, log=log)
    wrap_method(consumer.Worker, "initialize", _initialize, log=log)
    wrap_method(consumer.Worker, "shutdown", _shutdown, log=log)


_connect()
