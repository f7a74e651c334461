"""The steps every adapter shares: a master before it forks, a child as it starts.

The core discards and closes; these add what an operator needs around it:
each process names its connections after its role and pid, and a master
checks its settings and the connection budget before its first fork.
"""

from __future__ import annotations

import gc
import os
import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

from .. import _core
from .._core import Log, Report, djangodb
from .._tools import appname, budget
from .._tools.appname import Role
from . import greenlets, stopsignals


def child_started(*, log: Log | None = None, who: str = Role.WORKER) -> Report:
    """In a new child: discard what it inherited, then name the connections it will open."""
    report = _core.discard(log=log, who=who)
    try:
        appname.label(who, log)
    except Exception:
        (log or _core.log).exception("forkhooks: naming this process's connections failed; continuing")
    return report


def worker_ready(*, log: Log | None = None, who: str = Role.WORKER, timeout: float | None = None) -> Report:
    """A worker loaded its app: redo per-greenlet state if gevent patched it, then warm its pools."""
    # A worker that loads the app itself (no --preload, uWSGI's lazy-apps) imported Django only now:
    # from here on its connections are remembered (MySQL: in the registry its supervisor reads).
    djangodb.watch()
    if greenlets.patched():
        greenlets.after_patch(log=log, who=who)
    return _core.warm(log=log, who=who, timeout=timeout)


def master_ready(
    *,
    log: Log | None = None,
    workers: int = 1,
    threads: int = 1,
    dirty_workers: int = 0,
    dirty_threads: int = 1,
    timeout: float | None = None,
) -> Report:
    """A master, before its first fork: close what it opened, refuse bad pool settings, name, check the budget.

    Raises SystemExit when a pool setting is invalid: every worker would fail
    every request, so the server must not start.
    """
    log = log or _core.log
    _core.settings.report_bad_values(log)  # once here: the workers, forked later, inherit the record
    report = _core.close(log=log, who=Role.MASTER, timeout=timeout)
    _core.refuse_invalid_pools(report, log)
    try:
        appname.label(Role.MASTER, log)
    except Exception:
        log.exception("forkhooks: naming the master's connections failed; continuing")
    if _core.settings.budget_enabled(log):
        try:
            for found in budget.check(workers, threads, dirty_workers, dirty_threads):
                if found.over:
                    log.warning("forkhooks: connection budget %s. Fix: %s", found, found.fix())
                else:
                    log.info("forkhooks: connection budget %s", found)
        except Exception:
            log.exception("forkhooks: checking the connection budget failed; continuing")
    if _core.settings.gc_freeze_enabled(log):
        freeze_before_fork(log)
    return report


def freeze_before_fork(log: Log) -> None:
    """gc.freeze() what the master loaded, so the workers' collector never writes to those shared pages.

    A collection in a worker walks every tracked object and writes to each one's header: with a
    preloaded app that is a copy-on-write fault per page the master filled. Frozen objects are
    left out of collections for good (the master's garbage is collected first, not frozen).
    """
    gc.collect()
    gc.freeze()
    log.info("forkhooks: master %d froze %d objects (gc.freeze) before forking", os.getpid(), gc.get_freeze_count())


# A stop already asked for makes a later one redundant, except a quick one after a graceful one.
_QUICK: set[int] = {signal.SIGINT, signal.SIGQUIT}
_AT_LEAST_AS_URGENT: dict[int, set[int]] = {
    signal.SIGTERM: {signal.SIGTERM, *_QUICK},
    signal.SIGINT: _QUICK,
    signal.SIGQUIT: _QUICK,
}


class _Stopping:
    """This process's way out, as the stop-signal guard sees it."""

    exiting = False  # closing for good: a later stop signal changes nothing
    busy = False  # a stop signal's handler is running
    pending: list[int] = []  # stop signals that arrived meanwhile
    handled: set[int] = set()  # stop signals whose handler already ran


def close_for_exit(*, log: Log | None = None, who: str = Role.WORKER, timeout: float | None = None) -> Report:
    """Close on the way out of the process: from now on a stop signal cannot interrupt it."""
    _Stopping.exiting = True
    return _core.close(log=log, who=who, timeout=timeout)


def guard_stop_signals(
    *, log: Log | None = None, who: str = Role.WORKER, closed: Callable[[Report], Any] | None = None
) -> None:
    """Make sure a worker stopped by a signal closes its connections and pools, whole.

    - A stop signal whose action is the default (uvicorn-worker resets gunicorn's handlers, and
      uvicorn re-raises the signal once it has shut down, uvicorn #894) would end the process
      before gunicorn's worker_exit or worker_int runs: close first, then die by the same signal,
      so the exit status is kept.
    - A stop signal that arrives while another one's handler runs waits for it, and one that
      arrives once the process is on its way out changes nothing: stopped by a signal to its
      group, a gunicorn worker gets that signal and, a moment later, its master's SIGQUIT, whose
      handler would raise SystemExit in the middle of the first one's close and leave pools open.
    """

    def close_then_die(signum: int, frame: FrameType | None) -> None:
        if not _Stopping.exiting:
            report = close_for_exit(log=log, who=who)
            if closed is not None:  # the worker dies by the signal: whatever follows a close happens now
                closed(report)
        signal.signal(signum, signal.SIG_DFL)
        signal.raise_signal(signum)

    def one_at_a_time(handler: Callable[[int, FrameType | None], Any]) -> Callable[[int, FrameType | None], Any]:
        def handle(signum: int, frame: FrameType | None) -> Any:
            if _Stopping.exiting or _Stopping.handled & _AT_LEAST_AS_URGENT[signum]:
                # The way out is taken, or a stop at least as urgent was already asked for (gunicorn's
                # gevent worker exits from a greenlet its handler spawned: a second one would exit again).
                return None
            if _Stopping.busy:
                _Stopping.pending.append(signum)
                return None
            _Stopping.busy = True
            _Stopping.handled.add(signum)
            try:
                result = handler(signum, frame)
            except SystemExit:
                _Stopping.exiting = True
                raise
            finally:
                _Stopping.busy = False
            # The handler returned (gunicorn's SIGTERM one only marks the worker to finish):
            # a signal held meanwhile, Ctrl-C after a graceful stop say, still counts.
            held, _Stopping.pending = list(dict.fromkeys(_Stopping.pending)), []
            for later in held:
                signal.raise_signal(later)
            return result

        handle._forkhooks_guard = True  # type: ignore[attr-defined]
        return handle

    for signum in stopsignals.GUNICORN:
        handler = signal.getsignal(signum)
        if handler is signal.SIG_DFL and signum != signal.SIGQUIT:  # SIGQUIT's default dumps core: left alone
            signal.signal(signum, close_then_die)
        elif callable(handler) and not getattr(handler, "_forkhooks_guard", False):
            signal.signal(signum, one_at_a_time(handler))


def pools_open_on_demand() -> None:
    """In a process that runs one job (an RQ horse, a job process): its pools start empty (min_size 0), open on demand.

    A pool opened at its min_size while the job's first query waits for a
    connection grows by one more: 2 connections for a job that uses 1 (4 with
    ``"pool": True``, psycopg_pool's default min_size), each thrown away when
    the horse exits. max_size stays.
    """
    for alias in djangodb.pooled_aliases():
        options = djangodb.database_settings()[alias]["OPTIONS"]
        pool = options["pool"]
        pool = dict(pool) if isinstance(pool, dict) else {}
        pool["max_size"] = pool.get("max_size") or pool.get("min_size") or 4
        pool["min_size"] = 0
        options["pool"] = pool


def close_then_die(role: Role, log: Log) -> Callable[[int, FrameType | None], None]:
    """A handler for a stop signal that must stay fatal (a job's process): close first, cancelling a running query."""

    def handler(signum: int, frame: FrameType | None) -> None:
        try:
            _core.close(log=log, who=role)
        finally:
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)

    return handler


@contextmanager
def one_job(role: Role, log: Log) -> Iterator[None]:
    """Around the job of a process that runs one (an RQ horse, a job's process): name, pools on demand, close after.

    The name is how its supervisor finds the job's queries to cancel them; the close cancels a query
    still running when the job ends, fails or times out.
    """
    try:
        appname.label(role)
        pools_open_on_demand()
    except Exception:
        log.exception("forkhooks: preparing the job's connections failed; continuing")
    try:
        yield
    finally:
        _core.close(log=log, who=role)
