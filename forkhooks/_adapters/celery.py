"""The Celery adapter, public as ``forkhooks.celery`` (importing it connects the receivers, once)."""

from __future__ import annotations

import importlib
import logging
import os
import signal
import time
from collections.abc import Callable
from typing import Any

from .._tools.appname import Role

try:
    from celery import signals
except ImportError:
    raise ImportError(
        "forkhooks.celery needs Celery in this environment (pip install 'forkhooks[celery]'): "
        "import it from the module that creates your Celery app"
    ) from None

from .. import _core
from .._tools import appname
from . import cancel as _cancel
from . import forks
from .patching import wrap_method

__all__ = ["cancel_queries_of", "keeps_pools", "patch_django_fixup", "patch_hard_time_limit", "patch_pool_terminate"]

log = logging.getLogger("forkhooks.celery")

# The pid of the worker's main process once it starts a forking pool: only
# its own forks close first and count as pool children.
_parent: int | None = None
# This process is a child the worker's main process forked (a prefork pool
# process, or a replacement): it discarded at fork, keeps its pools across
# tasks and closes them when it ends.
_pool_child = False
_connected = False


def keeps_pools() -> bool:
    """Whether this process is a prefork pool child whose Django pools outlive each task."""
    return _pool_child


def _forking_pool(worker: Any) -> bool:
    """Whether the worker's pool forks its processes (prefork); solo, threads, gevent and eventlet do not."""
    pool = getattr(worker, "pool_cls", None)
    name = pool if isinstance(pool, str) else getattr(pool, "__module__", "")
    return "prefork" in str(name)


def _on_worker_init(sender: Any = None, **kwargs: Any) -> None:
    """In the worker's main process, before its pool starts: know its pid, watch Django's connections."""
    global _parent
    try:
        forks.install()  # Django is set up by now: watch() sees every wrapper from here on
        if _forking_pool(sender):
            _parent = os.getpid()
    except Exception:
        log.exception("forkhooks: setting up the Celery worker failed; continuing without it")


def _before_fork() -> None:
    # Every fork of the main process, the first pool processes and each
    # replacement (max_tasks_per_child, a crashed or time-limited process)
    # alike: the child then inherits no connection, and the main process no
    # pool thread across fork.
    if _parent is not None and os.getpid() == _parent:
        _core.close(log=log, who=Role.CELERY_MAIN)


def _after_fork_in_child() -> None:
    global _pool_child, _parent
    # Runs after forks.install()'s discard (at-fork callbacks run in the order registered).
    if _parent is not None and os.getppid() == _parent:
        _pool_child = True
    _parent = None  # a fork this child makes is not the main process's


def _on_worker_process_init(**kwargs: Any) -> None:
    """A prefork pool process is ready (billiard ran Celery's initializer): name its connections, warm its pools."""
    if not _pool_child:  # the solo pool sends this signal too, in the main process: as without forkhooks
        return
    try:
        appname.label(ROLE)
    except Exception:
        log.exception("forkhooks: naming this process's connections failed; continuing")
    _core.warm(log=log, who=Role.CELERY_WORKER)


def _on_worker_process_shutdown(**kwargs: Any) -> None:
    """A prefork pool process is ending (billiard then calls os._exit, so atexit never runs): close, cancelling."""
    if _pool_child:
        _core.close(log=log, who=Role.CELERY_WORKER)


def patch_django_fixup() -> bool:
    """Make Celery's Django fixup keep pools in pool children; False if this Celery's fixup is not the known one.

    Since celery PR #9953 the fixup closes every pooled alias's pool after
    each task in a prefork process (celery #10554): every task opens new
    connections. In a pool child set up by forkhooks, the fixup still closes
    each connection (a pooled one goes back to its pool, which drops it if
    broken, in a transaction or past max_lifetime), but leaves the pool open.
    """
    try:
        from celery.fixups.django import DjangoWorkerFixup
    except Exception:  # Django not installed: the fixup never runs
        return False
    current = getattr(DjangoWorkerFixup, "_close_database", None)
    if getattr(current, "_forkhooks", False):
        return True
    if not hasattr(DjangoWorkerFixup, "_is_prefork"):  # before celery PR #9953: the fixup never closes pools
        return False
    if current is None:
        log.warning(
            "forkhooks: this Celery's Django fixup has no _close_database; "
            "pool processes may close Django's pools after each task"
        )
        return False
    original = current

    def _close_database(self: Any) -> Any:
        if not _pool_child:
            return original(self)
        # The fixup closes pools only for prefork processes: in ours, it closes
        # connections as it always did and the pools stay.
        self.__dict__["_is_prefork"] = lambda: False
        try:
            return original(self)
        finally:
            self.__dict__.pop("_is_prefork", None)

    _close_database._forkhooks = True  # type: ignore[attr-defined]
    DjangoWorkerFixup._close_database = _close_database
    return True


ROLE = Role.CELERY_WORKER  # pool processes name their connections <prefix>:celery-worker:<pid>


def cancel_queries_of(pid: int) -> int:
    """From the main process: cancel the queries pool process `pid` is running; how many."""
    return _cancel.cancel_queries_of(pid, ROLE, log=log)


def patch_hard_time_limit() -> bool:
    """Cancel, from the main process, the query of a task that hits its hard time limit, before billiard kills it.

    billiard sends SIGTERM and, 0.1 s later, SIGKILL: a pool process blocked
    in a query (psycopg 3 looks at signals every 0.1 s, psycopg2 not before
    the query ends) rarely gets to cancel it itself, and a killed client
    does not stop its query: the server runs it to the end, holding its locks
    and a connection slot.
    """

    def wrap(original: Callable[..., Any]) -> Callable[..., Any]:
        def on_timeout(self: Any, soft: bool, timeout: float) -> Any:
            pid = getattr(self, "worker_pid", None)
            if not soft and pid and _parent is not None and os.getpid() == _parent:
                try:
                    n = cancel_queries_of(int(pid))
                    log.info("forkhooks: hard time limit of pool process %s: cancelled %d running query(ies)", pid, n)
                except Exception:
                    log.exception("forkhooks: cancelling the queries of pool process %s failed; continuing", pid)
            return original(self, soft, timeout)

        return on_timeout

    return _wrap_method("celery.worker.request", "Request", "on_timeout", wrap)


def patch_pool_terminate() -> bool:
    """Cancel, from the main process, the queries of every pool process a cold shutdown terminates.

    A cold shutdown (Ctrl-C twice, SIGQUIT) terminates the prefork pool with
    tasks still running. A pool process blocked in a query cannot act on the
    SIGTERM that ends it (psycopg2 never before the query returns): the
    worker waited for the query, and a process killed meanwhile left it
    running on the server. A warm shutdown lets tasks finish and never gets
    here.
    """

    def wrap(original: Callable[..., Any]) -> Callable[..., Any]:
        def on_terminate(self: Any) -> Any:
            if _parent is not None and os.getpid() == _parent:
                try:
                    pids = [p.pid for p in list(getattr(self._pool, "_pool", None) or []) if p.pid]
                    n = sum(cancel_queries_of(pid) for pid in pids)
                    log.info("forkhooks: terminating the pool: cancelled %d running query(ies)", n)
                except Exception:
                    log.exception("forkhooks: cancelling the pool processes' queries failed; continuing")
            return original(self)

        return on_terminate

    return _wrap_method("celery.concurrency.prefork", "TaskPool", "on_terminate", wrap)


def patch_lost_processes() -> bool:
    """End, from the main process, the backends of a pool process that died without closing them.

    A pool process killed by the OOM killer, ``kill -9`` or billiard's SIGKILL
    runs no Python: its query goes on in the server, holding its locks and a
    connection slot. billiard joins each dead process in the main process
    (``_join_exited_workers``); right after, forkhooks terminates that process's
    backends. A process that exited by itself (a clean shutdown,
    ``--max-tasks-per-child``) closed its own and costs no connection.
    """

    def wrap(original: Callable[..., Any]) -> Callable[..., Any]:
        def join_exited_workers(self: Any, *args: Any, **kwargs: Any) -> Any:
            if _parent is None or os.getpid() != _parent:
                return original(self, *args, **kwargs)
            before = list(getattr(self, "_pool", None) or [])
            result = original(self, *args, **kwargs)
            for proc in before:
                if proc in self._pool or proc.exitcode is None or proc.exitcode >= 0:
                    continue  # alive, or it exited by itself (0, billiard's recycle code) and closed
                try:
                    n = _cancel.end_backends_of(proc.pid, log=log)
                    if n:
                        log.info(
                            "forkhooks: pool process %s died (%s) without closing: ended %d backend(s)",
                            proc.pid,
                            _signal_name(-proc.exitcode),
                            n,
                        )
                except Exception:
                    log.exception("forkhooks: ending the backends of pool process %s failed; continuing", proc.pid)
            return result

        return join_exited_workers

    wrapped = _wrap_method("billiard.pool", "Pool", "_join_exited_workers", wrap)
    _wrap_method("celery.concurrency.asynpool", "AsynPool", "_event_process_exit", _join_once_exited)
    return wrapped


def _join_once_exited(original: Callable[..., Any]) -> Callable[..., Any]:
    """Make sure a pool process whose exit Celery's event loop saw is joined now, not at the next 5 s timer.

    The loop learns of an exit when the process's sentinel pipe closes, a moment
    before the kernel lets its parent reap it: billiard's join then finds it
    still running and leaves it, and its backends, to the pool's next periodic
    check. Waiting (bounded) until it can be reaped, and checking again, ends
    them within the second.
    """

    def event_process_exit(self: Any, hub: Any, proc: Any) -> Any:
        result = original(self, hub, proc)
        if _parent is not None and os.getpid() == _parent and proc in getattr(self, "_pool", ()):
            if _reapable(proc.pid, timeout=1.0):
                self.maintain_pool()
        return result

    return event_process_exit


def _reapable(pid: int, *, timeout: float) -> bool:
    """Wait up to `timeout` s until child `pid` has exited, without reaping it (its parent's join does)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None:
                return True
        except ChildProcessError:  # reaped already
            return False
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)


def _signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def _wrap_method(
    module: str, cls_name: str, name: str, wrap: Callable[[Callable[..., Any]], Callable[..., Any]]
) -> bool:
    """Replace `module.cls_name.name` with wrap(itself), once; False when Celery has no such method."""
    try:
        cls = getattr(importlib.import_module(module), cls_name)
    except Exception:
        return False
    return wrap_method(cls, name, wrap)


def _connect() -> None:
    global _connected
    if _connected:
        return
    _connected = True
    forks.install()  # the discard at fork, registered before ours: it runs first in the child
    os.register_at_fork(before=_before_fork, after_in_child=_after_fork_in_child)
    signals.worker_init.connect(_on_worker_init, weak=False, dispatch_uid="forkhooks.celery.worker_init")
    signals.worker_process_init.connect(
        _on_worker_process_init, weak=False, dispatch_uid="forkhooks.celery.worker_process_init"
    )
    signals.worker_process_shutdown.connect(
        _on_worker_process_shutdown, weak=False, dispatch_uid="forkhooks.celery.worker_process_shutdown"
    )
    patch_django_fixup()
    patch_hard_time_limit()
    patch_pool_terminate()
    patch_lost_processes()


_connect()
