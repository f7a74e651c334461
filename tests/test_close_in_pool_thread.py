"""close() where a stop signal can land: in one of a psycopg_pool's own threads."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool

import forkhooks
from forkhooks import _core


class Lines:
    """A Log that keeps forkhooks' lines."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def info(self, msg: str, *args: Any) -> None:
        self.lines.append(msg % args)

    warning = info
    exception = info


def in_pool_thread(
    dsn: str, action: Callable[[ConnectionPool], Any], *, track: bool = False
) -> tuple[ConnectionPool, Any]:
    """Run `action(pool)` in the pool's worker thread (its `configure` callback); what it returned or raised."""
    outcome: list[Any] = []
    done = threading.Event()

    def configure(conn: psycopg.Connection) -> None:
        if done.is_set():
            return
        try:
            outcome.append(action(pool))
        except BaseException as exc:  # what the thread would die of
            outcome.append(exc)
        finally:
            done.set()

    pool = ConnectionPool(dsn, min_size=1, open=False, configure=configure, kwargs={"autocommit": True})
    if track:
        forkhooks.track(pool)
    pool.open(wait=False)
    assert done.wait(15), "the pool's worker never connected"
    return pool, outcome[0]


def test_close_in_a_pool_thread_closes_without_joining_itself(dsn: str) -> None:
    """The core's close() run by a pool's own worker closes that pool: no 'cannot join current thread'."""
    log = Lines()
    pool, report = in_pool_thread(dsn, lambda pool: _core.close(log=log, who="worker", timeout=2), track=True)
    assert isinstance(report, _core.Report), report
    assert report.failures == 0 and report.pools >= 1, log.lines
    assert pool.closed
    assert not any("cannot join" in line for line in log.lines), log.lines


def test_control_pool_close_in_its_own_thread_raises(dsn: str) -> None:
    """psycopg_pool's own close() there joins the calling thread and raises."""
    pool, error = in_pool_thread(dsn, lambda pool: pool.close(timeout=2))
    try:
        assert isinstance(error, RuntimeError) and "cannot join current thread" in str(error), error
    finally:
        pool.close(timeout=2)
