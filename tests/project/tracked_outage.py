"""A tracked pool in a forked child that warms while PostgreSQL is down, then serves once it is back.

    python -m tests.project.tracked_outage psycopg_pool|psycopg2

The test drives PostgreSQL and talks to this script one line at a time:
  -> "built"            the pool was built (and filled) while the server was up
  <- "down"             the test stopped the server: fork a child now
  -> "warmed <json>"    the child warmed (forkhooks.warm), the server still down
  -> "first-ok"         the child's first query after the test started the server again
  -> "done <json>"      the child's counts over QUERIES queries once it served
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import sys
import time
from collections.abc import Callable
from typing import Any

import forkhooks

DSN = os.environ["FORKHOOKS_DSN"]
SQL = "SELECT %s::text"
QUERIES = 200
FIRST_OK_WITHIN = 20.0  # the child gives up (and says so) if no query succeeds in this time


def build(kind: str) -> tuple[Any, Callable[[str], str], Callable[[], bool]]:
    """The tracked pool, a query on it, and whether it is closed."""
    if kind == "psycopg_pool":
        from psycopg_pool import ConnectionPool

        pool = forkhooks.track(ConnectionPool(DSN, min_size=2, max_size=4, open=True, timeout=2))
        pool.wait(timeout=10)  # the server is up: filled, as at import

        def query(tag: str) -> str:
            with pool.connection() as conn:
                row = conn.execute(SQL, [tag]).fetchone()
                return str(row[0]) if row else ""

        return pool, query, lambda: bool(pool.closed)
    from psycopg2.pool import ThreadedConnectionPool

    pool2 = forkhooks.track(ThreadedConnectionPool(1, 4, DSN))  # connects minconn=1 now

    def query2(tag: str) -> str:
        conn = pool2.getconn()  # connects on demand when the pool holds none
        try:
            with conn.cursor() as cur:
                cur.execute(SQL, [tag])
                row = cur.fetchone()
            conn.rollback()
        except Exception:
            pool2.putconn(conn, close=True)  # a connection the outage broke: do not hand it out again
            raise
        pool2.putconn(conn)
        return str(row[0]) if row else ""

    return pool2, query2, lambda: bool(pool2.closed)


def say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def child(query: Callable[[str], str], closed: Callable[[], bool]) -> int:
    report = forkhooks.warm(timeout=1.0)
    say("warmed " + json.dumps({"opened": report.opened, "closed": closed(), "failures": report.failures}))
    deadline = time.monotonic() + FIRST_OK_WITHIN
    while True:
        try:
            if query("probe") == "probe":
                break
        except Exception:
            pass
        if time.monotonic() > deadline:
            say("done " + json.dumps({"error": "no query succeeded", "closed": closed()}))
            return 1
        time.sleep(0.05)  # a poll interval between attempts
    say("first-ok")
    ok = wrong = failed = 0
    for _ in range(QUERIES):
        tag = secrets.token_hex(8)
        try:
            got = query(tag)
        except Exception:
            failed += 1
            continue
        ok, wrong = (ok + 1, wrong) if got == tag else (ok, wrong + 1)
    say("done " + json.dumps({"ok": ok, "wrong": wrong, "failed": failed, "closed": closed()}))
    return 0


def main() -> int:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(name)s %(levelname)s %(message)s")
    forkhooks.install()  # discard in every child at fork
    _pool, query, closed = build(sys.argv[1])
    say("built")
    if sys.stdin.readline().strip() != "down":
        return 2
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            code = child(query, closed)
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


if __name__ == "__main__":
    sys.exit(main())
