"""Shared by the MySQL reaping tests: a row lock the test holds, and the sessions stuck waiting for it.

The stuck query (tests/project/mysqlreap_jobs.py's LOCKED) waits for that row up to 50 s: MariaDB's
SLEEP() would end by itself within 5 s of its client's death (it looks at the client every 5 s), a
lock wait never does, as a long scan or a report would not.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from . import mariadb
from .project.mysqlreap_jobs import LOCKED, TABLE


@pytest.fixture
def row_lock(mysql_dsn: str) -> Iterator[None]:
    """The test holds row 1 of the table the stuck query locks (FOR UPDATE), for the test's length."""
    conn = mariadb.connect(mysql_dsn)
    try:
        with conn.cursor() as cur:
            cur.execute(f"CREATE TABLE IF NOT EXISTS {TABLE} (id INT PRIMARY KEY) ENGINE=InnoDB")
            cur.execute(f"INSERT IGNORE INTO {TABLE} VALUES (1)")
            cur.execute("BEGIN")
            cur.execute(f"SELECT id FROM {TABLE} WHERE id = 1 FOR UPDATE")
        yield
    finally:
        conn.close()


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


@pytest.fixture
def server_up_a_while(mysql_dsn: str) -> None:
    """Wait (bounded) until the server has run 3 s: a session made within about a second of its start is never
    acted on (Uptime counts whole seconds, so it cannot be told from one made before a restart), and a fresh
    test server is that young when the first test starts."""
    from .servers import poll

    poll(lambda: uptime(mysql_dsn) >= 3, timeout=10, what="the MySQL server up for 3 s")
