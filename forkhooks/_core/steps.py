"""The one core: discard in a child, close in the owner, warm a fresh worker.

Adapters (gunicorn hooks, worker classes, uWSGI, Celery, RQ, the Django app)
only decide *when* to call these. None of them raises: a failure is logged and
the process goes on with fresh state, because a hook that raises takes a worker
down.
"""

from __future__ import annotations

import inspect
import os
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

from . import djangodb as _django
from . import mysql as _mysql
from . import settings as _settings
from . import tracked as _tracked
from .sockets import Inerter, graveyard, pool_connections


class Log(Protocol):
    """What forkhooks needs of a logger: gunicorn's and logging's both fit."""

    def info(self, msg: str, *args: Any) -> None: ...
    def warning(self, msg: str, *args: Any) -> None: ...
    def exception(self, msg: str, *args: Any) -> None: ...


_log = _settings.log

# The pid discard() last ran in: a second call in the same process (a hook and
# a worker class, or an at-fork callback then a hook) must not throw away the
# connections this process opened itself in between.
_discarded_in: int | None = None


@dataclass
class Report:
    """What one call did, for its single log line."""

    action: str
    connections: int = 0
    pools: int = 0
    opened: list[str] = field(default_factory=list)
    failures: int = 0
    note: str = ""

    def __str__(self) -> str:
        if self.note:
            return self.note
        if self.action == "warm":
            text = ", ".join(self.opened) if self.opened else "no pool configured"
            return f"opened {text}"
        return f"{self.action} {_plural(self.connections, 'connection')} and {_plural(self.pools, 'pool')}"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


@contextmanager
def _guard(report: Report, log: Log, what: str) -> Iterator[None]:
    """Log a failure of one step and go on with the next."""
    try:
        yield
    except Exception:
        report.failures += 1
        log.exception("forkhooks: %s failed; continuing with fresh state", what)


def _finish(report: Report, log: Log, who: str) -> Report:
    suffix = f" ({report.failures} step(s) failed, see above)" if report.failures else ""
    log.info("forkhooks: %s %d %s%s", who, os.getpid(), report, suffix)
    return report


def discard(*, log: Log | None = None, who: str = "child") -> Report:
    """In a forked child, make every inherited connection inert and forget it; send nothing."""
    global _discarded_in
    log = log or _log
    report = Report("discarded")
    pid = os.getpid()
    if _discarded_in == pid:
        report.note = "nothing to discard: already done in this process"
        return _finish(report, log, who)
    _discarded_in = pid
    with Inerter() as inert:
        for wrapper in _guarded_list(_django.wrappers, report, log, "listing Django connections"):
            with _guard(report, log, f"discarding Django connection {getattr(wrapper, 'alias', '?')!r}"):
                inert.bury(wrapper.connection)
                _django.forget_transaction(wrapper)
        for pools in _guarded_list(_django.pool_dicts, report, log, "listing Django pools"):
            for key in list(pools):
                pool = pools.pop(key)
                # No pool.close(): it would join threads that did not survive
                # fork and send Terminate on sockets the parent still uses.
                with _guard(report, log, f"discarding pool {key!r}"):
                    for conn in pool_connections(pool):
                        inert.bury(conn)
                graveyard.append(pool)
                report.pools += 1
        for obj in _guarded_list(_tracked.tracked, report, log, "listing tracked pools"):
            with _guard(report, log, f"discarding tracked {_tracked.name(obj)}"):
                _tracked.discard(obj, inert)
                report.pools += 1
        with _guard(report, log, "resetting Django's connection handler"):
            _django.reset_handler()
            # From now on remember every wrapper any thread opens: close() at exit must find them all.
            _django.watch()
        report.connections = inert.count
    return _finish(report, log, who)


def close(*, log: Log | None = None, who: str = "owner", timeout: float | None = None) -> Report:
    """In the process that opened them, close connections and pools properly (Terminate sent)."""
    log = log or _log
    return _close(log, who, _settings.timeout(timeout, _settings.close_timeout, log))


def _close(log: Log, who: str, timeout: float) -> Report:
    report = Report("closed")
    # Every wrapper of every thread (gthread's request threads, a job runner's), not only this
    # thread's: one left open is dropped at exit and the server logs an aborted connection.
    _django.watch()
    with _sync_calls_allowed():
        for wrapper in _guarded_list(_django.wrappers, report, log, "listing Django connections"):
            conn = wrapper.connection
            if conn is None:
                continue
            running = True  # if cancelling fails, another thread's connection is left alone: it may be in use
            with _guard(report, log, f"cancelling the query of Django connection {wrapper.alias!r}"):
                running = cancel_running_query(wrapper, conn, timeout)
            with _guard(report, log, f"closing Django connection {wrapper.alias!r}"):
                report.connections += _close_wrapper(wrapper, running, log)
    for pools in _guarded_list(_django.pool_dicts, report, log, "listing Django pools"):
        for key in list(pools):
            pool = pools.pop(key)
            with _guard(report, log, f"closing pool {key!r}"):
                _close_pool(pool, timeout)
                report.pools += 1
    for obj in _guarded_list(_tracked.tracked, report, log, "listing tracked pools"):
        with _guard(report, log, f"closing tracked {_tracked.name(obj)}"):
            report.pools += _tracked.close(obj, timeout)
    return _finish(report, log, who)


_ASYNC_UNSAFE = "DJANGO_ALLOW_ASYNC_UNSAFE"


@contextmanager
def _sync_calls_allowed() -> Iterator[None]:
    """Let Django's sync-only calls (close()) run while an event loop runs in this thread, for this close only.

    uvicorn-worker's worker closes in its stop signal's handler, on top of the loop it is leaving:
    there Django refuses close() (SynchronousOnlyOperation), and every persistent connection
    (CONN_MAX_AGE) would be dropped at exit without a goodbye. Blocking the loop is harmless then.
    """
    asyncio = sys.modules.get("asyncio")  # never imported because of us
    if asyncio is None or asyncio.events._get_running_loop() is None or os.environ.get(_ASYNC_UNSAFE):
        yield
        return
    os.environ[_ASYNC_UNSAFE] = "1"  # Django's documented switch; read by its check at each call
    try:
        yield
    finally:
        os.environ.pop(_ASYNC_UNSAFE, None)


def _close_wrapper(wrapper: Any, running: bool, log: Log) -> int:
    """Close a wrapper whose query, if any, was cancelled; 1 if closed.

    Another thread's wrapper is closed under Django's thread-sharing allowance, unless that
    thread is inside a query: closing a connection under a running call could crash the
    driver, so its query was cancelled and the thread itself ends the request.
    """
    mine = getattr(wrapper, "_thread_ident", threading.get_ident()) == threading.get_ident()
    if running and mine and _mysql.is_mysql(wrapper.connection):
        # A signal handler (gunicorn's worker_abort) on top of this thread's own query: PyMySQL's
        # close would re-enter the read it interrupted. The query is killed; the process exits.
        log.info("forkhooks: Django connection %r was in a query: cancelled, left to the exit", wrapper.alias)
        return 0
    if mine:
        wrapper.close()
        return 1
    if running:
        log.info("forkhooks: Django connection %r of another thread was in a query: cancelled", wrapper.alias)
        return 0
    wrapper.inc_thread_sharing()
    try:
        wrapper.close()
    finally:
        wrapper.dec_thread_sharing()
    return 1


# libpq's PQTRANS_ACTIVE: a command is in progress (psycopg 3 TransactionStatus.ACTIVE,
# psycopg2 TRANSACTION_STATUS_ACTIVE).
_ACTIVE = 1


def cancel_running_query(wrapper: Any, conn: Any, timeout: float) -> bool:
    """Ask the server to cancel the query `conn` is running, if any; True when one was running.

    gunicorn's worker timeout (SIGABRT -> worker_abort) and SIGINT/SIGQUIT (worker_int)
    interrupt a request mid-query. Closing sends Terminate, but the server reads it only once the
    query ends: a backend in pg_sleep(30) outlived its aborted worker by 28 s (tests/test_faults.py),
    holding its locks and a connection slot while the replacement worker opened its own.
    A driver this does not know is left alone (False).
    """
    if _mysql.is_mysql(conn):
        if not _mysql.busy(conn):
            return False
        _mysql.kill_query(wrapper, conn, timeout)
        return True
    # psycopg 3's info is a ConnectionInfo; other drivers' `info` may be anything (MySQLdb's is a method).
    status = getattr(getattr(conn, "info", None), "transaction_status", None)
    if status is None and hasattr(conn, "get_transaction_status"):  # psycopg2
        status = conn.get_transaction_status()
    if not isinstance(status, int) or int(status) != _ACTIVE:
        return False
    cancel_safe = getattr(conn, "cancel_safe", None)  # psycopg >= 3.2: bounded, non-blocking
    if cancel_safe is not None:
        cancel_safe(timeout=timeout)
    else:
        conn.cancel()
    return True


def refuse_invalid_pools(report: Report, log: Log) -> None:
    """Raise SystemExit, after logging why, when a pool setting cannot build a pool.

    Every worker would fail every request, so the server must not start.
    """
    problems = _guarded_list(_django.try_building_pools, report, log, "checking pool settings")
    error = getattr(log, "error", log.warning)
    for problem in problems:
        error("forkhooks: %s; the server cannot serve with it, so it does not start", problem)
    if problems:
        raise SystemExit(1)


def _close_pool(pool: Any, timeout: float) -> None:
    close = pool.close
    if "timeout" in inspect.signature(close).parameters:  # psycopg_pool: bounded join
        with _tracked.not_joining_current_thread(pool):
            close(timeout=timeout)
    else:
        close()


def warm(*, log: Log | None = None, who: str = "worker", timeout: float | None = None) -> Report:
    """Open each configured Django pool to its min_size, so first requests do not wait."""
    log = log or _log
    report = Report("warm")
    if not _settings.warm_enabled(log):
        report.note = "warm-up off (FORKHOOKS_WARM=0)"
        return _finish(report, log, who)
    timeout = _settings.timeout(timeout, _settings.warm_timeout, log)
    for alias in _django.pooled_aliases():
        with _guard(report, log, f"opening pool {alias!r}"):
            pool = _django.pool_of(alias)
            if pool is None or "wait" not in inspect.signature(pool.open).parameters:
                continue
            report.opened.append(_warm_django_pool(alias, pool, timeout, log))
    for obj in _guarded_list(_tracked.tracked, report, log, "listing tracked pools"):
        with _guard(report, log, f"warming tracked {_tracked.name(obj)}"):
            try:
                opened = _tracked.warm(obj, timeout)
            except _tracked.NotReady as short:  # the application holds the pool: it stays as it is
                log.warning(
                    "forkhooks: tracked %s not ready within %ss (%s); the worker serves and %s",
                    short.label,
                    timeout,
                    short.reason,
                    short.then,
                )
                opened = f"{short.label} (not ready)"
            if opened:
                report.opened.append(opened)
    return _finish(report, log, who)


def _warm_django_pool(alias: str, pool: Any, timeout: float, log: Log) -> str:
    """Open a Django pool and wait for its min_size; a pool that reached no server is dropped, not kept."""
    waited = _tracked.wait_min_size(pool, timeout)
    if waited.ready:
        return f"{alias!r} ({pool.min_size} connections)"
    error = f": {waited.error}" if waited.error else ""
    if waited.idle:  # the server answers (slowly, or up to a limit): keep the pool, it goes on filling
        reason = f"{waited.idle} of min_size={pool.min_size} connections{error}"
        then = "the pool keeps connecting"
    else:
        # The server is unreachable. The pool would go on retrying with psycopg_pool's backoff
        # (1, 2, 4, ... s): after a long outage its next attempt can come long after the server
        # is back. Without forkhooks Django opens its pool on the first request, so do as it
        # does: drop this one (bounded close) and let the first request build a fresh one.
        reason = f"no connection{error}"
        then = "Django opens the pool on the first request"
        _django.forget_pool(alias, pool)
        _close_pool(pool, _settings.close_timeout(log))
    log.warning("forkhooks: pool %r not ready within %ss (%s); the worker serves and %s", alias, timeout, reason, then)
    return f"{alias!r} (not ready)"


def _guarded_list(source: Callable[[], Any], report: Report, log: Log, what: str) -> list[Any]:
    with _guard(report, log, what):
        return list(source())
    return []
