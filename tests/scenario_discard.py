"""Fork a Django process N times and report, as JSON, what parent and children saw.

Run by tests/test_discard.py in a subprocess, so that each case gets its own
driver (psycopg 3 or psycopg2) and settings, and the pytest process stays clean.

    python -m tests.scenario_discard DSN --driver psycopg2 --mode atomic --children 50 --child discard
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import secrets
import struct
import sys
import termios
from typing import Any


def configure(dsn: str, driver: str, mode: str) -> None:
    """Set Django up for one case: psycopg2 by hiding psycopg 3, pooling when asked."""
    if driver == "psycopg2":
        sys.modules["psycopg"] = None  # type: ignore[assignment]  # Django falls back to psycopg2
    import django
    from django.conf import settings

    from forkhooks.demo.site.database import django_database

    pool = {"min_size": 2, "max_size": 4} if mode == "pooled" else None
    databases = {"default": django_database(dsn, pool=pool)}
    if mode == "sqlite":
        databases["local"] = {"ENGINE": "django.db.backends.sqlite3", "NAME": os.environ["SCENARIO_SQLITE"]}
    settings.configure(DATABASES=databases, USE_TZ=True)
    django.setup()


def observe(dsn: str, backend: int) -> dict[str, Any]:
    """What the server says of a backend, seen from a separate observer connection."""
    import psycopg2 as driver  # always installed in the test extra; independent of the case's driver

    with driver.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT state, state_change::text, xact_start::text FROM pg_stat_activity WHERE pid = %s", [backend]
        )
        row = cur.fetchone()
    conn.close()
    return {"state": row[0], "state_change": row[1], "xact_start": row[2]} if row else {}


def pending_bytes(fd: int) -> int:
    """Bytes waiting to be read on the parent's socket: a reply to anything a child sent."""
    return struct.unpack("i", fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0"))[0]


def child(action: str, mode: str, atomic: Any, write_fd: int) -> None:
    """What one forked child does: free itself of the parent's connection, then query."""
    from django.db import connection, connections

    import forkhooks

    try:
        if action == "discard":
            forkhooks.discard(who="test child")
            forkhooks.discard(who="test child")  # a second call is harmless
        elif action == "close":  # the naive fix: Terminate down the parent's socket
            connection.close()
        tag = secrets.token_hex(4)
        with connection.cursor() as cur:
            cur.execute("SELECT %s::text, pg_backend_pid()", [tag])
            got, backend = cur.fetchone()
        if mode == "sqlite":
            with connections["local"].cursor() as cur:
                cur.execute("SELECT count(*) FROM t")
        if atomic is not None:
            # The child leaves the parent's atomic() block as code after fork() would.
            atomic.__exit__(None, None, None)
        report = {"backend": backend, "tag_ok": got == tag}
    except Exception as exc:
        report = {"error": f"{type(exc).__name__}: {exc}"}
    os.write(write_fd, (json.dumps(report) + "\n").encode())
    os._exit(0)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("dsn")
    parser.add_argument("--driver", choices=["psycopg", "psycopg2"], default="psycopg")
    parser.add_argument("--mode", choices=["plain", "pooled", "atomic", "sqlite"], default="plain")
    parser.add_argument("--children", type=int, default=50)
    parser.add_argument("--child", choices=["discard", "close", "nothing"], default="discard")
    args = parser.parse_args()
    configure(args.dsn, args.driver, args.mode)

    from django.db import connection, connections, transaction

    atomic = None
    if args.mode == "sqlite":
        with connections["local"].cursor() as cur:
            cur.execute("CREATE TABLE IF NOT EXISTS t (x int)")
    if args.mode == "atomic":
        atomic = transaction.atomic()
        atomic.__enter__()
    with connection.cursor() as cur:
        cur.execute("SELECT pg_backend_pid()")
        parent_backend = cur.fetchone()[0]
        if atomic is not None:
            cur.execute("CREATE TEMP TABLE marker AS SELECT 42 AS answer")
    fd = connection.connection.pgconn.socket if args.driver == "psycopg" else connection.connection.fileno()
    before = observe(args.dsn, parent_backend)

    read_fd, write_fd = os.pipe()
    for _ in range(args.children):
        pid = os.fork()
        if pid == 0:
            os.close(read_fd)
            child(args.child, args.mode, atomic, write_fd)
        os.waitpid(pid, 0)
    os.close(write_fd)
    with os.fdopen(read_fd) as pipe:
        children = [json.loads(line) for line in pipe]

    after = observe(args.dsn, parent_backend)
    report: dict[str, Any] = {
        "parent_backend": parent_backend,
        "children": children,
        "before": before,
        "after": after,
        "pending_bytes": pending_bytes(fd),
    }
    try:
        with connection.cursor() as cur:
            cur.execute("SELECT pg_backend_pid()")
            report["parent_backend_after"] = cur.fetchone()[0]
            if atomic is not None:
                cur.execute("SELECT answer FROM marker")  # only visible inside the parent's transaction
                report["parent_transaction_intact"] = cur.fetchone()[0] == 42
        if args.mode == "sqlite":
            with connections["local"].cursor() as cur:
                cur.execute("SELECT count(*) FROM t")
                report["sqlite_ok"] = cur.fetchone()[0] == 0
    except Exception as exc:
        report["parent_error"] = f"{type(exc).__name__}: {exc}"
    if atomic is not None and "parent_error" not in report:
        transaction.set_rollback(True)
        atomic.__exit__(None, None, None)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
