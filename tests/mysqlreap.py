"""Shared by the MySQL reaping tests: a row lock the test holds, and the sessions stuck waiting for it.

The stuck query (tests/project/mysqlreap_jobs.py's LOCKED) waits for that row up to 50 s: MariaDB's
SLEEP() would end by itself within 5 s of its client's death (it looks at the client every 5 s), a
lock wait never does, as a long scan or a report would not.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

from forkhooks._core import mysql

from . import mariadb
from .jobrunners import client, comes_true
from .project import jobs
from .project.mysqlreap_jobs import LOCKED
from .servers import poll


def stuck_sessions(mysql_dsn: str) -> list[int]:
    """Sessions in the stuck query (waiting for the row lock)."""
    with mariadb.connect(mysql_dsn) as conn, conn.cursor() as cur:
        cur.execute("SELECT id FROM information_schema.processlist WHERE info = %s", [LOCKED])
        return [int(r[0]) for r in cur.fetchall()]


def exists(mysql_dsn: str, session: int) -> bool:
    """Whether session `session` is on the server."""
    with mariadb.connect(mysql_dsn) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM information_schema.processlist WHERE id = %s", [session])
        return bool(cur.fetchone()[0])


def end_stuck(mysql_dsn: str) -> None:
    """KILL every session still in the stuck query (a control's): never left to the next test."""
    with mariadb.connect(mysql_dsn) as conn, conn.cursor() as cur:
        for session in stuck_sessions(mysql_dsn):
            try:
                cur.execute(f"KILL {session}")
            except Exception:
                pass


def uptime(mysql_dsn: str) -> int:
    """The server's Uptime (whole seconds)."""
    with mariadb.connect(mysql_dsn) as conn, conn.cursor() as cur:
        cur.execute("SHOW GLOBAL STATUS LIKE 'Uptime'")
        return int(cur.fetchone()[1])


GONE_WITHIN = 3.0  # seconds from a death to its session's end, with reaping on
CONTROL_WATCH = 5.0  # how long a control watches the session stay


def kill_and_watch(mysql_dsn: str, pid: int, session: int, reap: bool) -> float | None:
    """SIGKILL `pid` (stuck in a query on `session`): seconds until the session is gone, None if it is still there
    after CONTROL_WATCH (with reaping on, it must go within GONE_WITHIN)."""
    os.kill(pid, signal.SIGKILL)
    killed_at = time.monotonic()
    if comes_true(lambda: not exists(mysql_dsn, session), timeout=GONE_WITHIN if reap else CONTROL_WATCH):
        return round(time.monotonic() - killed_at, 2)
    return None


def owner(pids: list[int], session: int) -> int:
    """The process whose registry file lists `session` (the test kills it: a wrong answer fails the test)."""
    for pid in pids:
        registry = mysql.read_registry(pid)
        if registry and session in {e.thread_id for e in registry.entries}:
            return pid
    raise AssertionError(f"no registry of {pids} lists session {session}")


def announced(sock: Path, mysql_dsn: str) -> tuple[int, int]:
    """(pid, session) of the stuck job, once its query waits on the server."""
    r = client(sock)
    poll(lambda: r.llen(jobs.EVENTS) > 0, timeout=30, what="the stuck job's announcement")
    event = json.loads(r.lindex(jobs.EVENTS, 0))
    session = int(event["slow_backend"])
    poll(lambda: session in stuck_sessions(mysql_dsn), timeout=10, what="the stuck job's query")
    return int(event["pid"]), session
