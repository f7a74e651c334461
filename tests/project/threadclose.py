"""Threads of one process each hold a Django connection; the main thread closes as a worker does at exit.

    DJANGO_SETTINGS_MODULE=... python -m tests.project.threadclose [--sleeper] [--this-thread-only]

Prints one JSON line (the threads' session ids, what close() reported, how long a
sleeping query lasted), then waits for its stdin to close, so the test can look at
the server while the threads are still alive.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from typing import Any

import django

from forkhooks.demo.process import poll

THREADS = 3


def session_sql(vendor: str) -> str:
    return "SELECT CONNECTION_ID()" if vendor == "mysql" else "SELECT pg_backend_pid()"


def sleeping(vendor: str) -> bool:
    """Whether the server runs the sleeper's query (asked over the main thread's own connection)."""
    from django.db import connection

    sql = (
        "SELECT count(*) FROM information_schema.processlist WHERE info LIKE 'SELECT SLEEP(30)%%'"
        if vendor == "mysql"
        else "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND query LIKE 'SELECT pg_sleep(30)%%'"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql)
        return bool(cursor.fetchone()[0])


def main() -> None:
    """Open connections in threads, close from the main thread, report."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--sleeper", action="store_true", help="one more thread runs a 30 s query")
    parser.add_argument("--this-thread-only", action="store_true", help="control: close sees only its thread")
    args = parser.parse_args()
    django.setup()
    from django.db import connection

    import forkhooks
    from forkhooks._core import djangodb

    forkhooks.install()  # remembers every wrapper from now on, as in a worker after discard()
    if args.this_thread_only:
        djangodb.wrappers = djangodb.current_thread_wrappers
    vendor = connection.vendor
    sessions: list[int] = []
    ready = threading.Barrier(THREADS + 1)
    release = threading.Event()
    slept: dict[str, Any] = {}

    def hold() -> None:
        with connection.cursor() as cursor:
            cursor.execute(session_sql(vendor))
            sessions.append(int(cursor.fetchone()[0]))
        ready.wait(30)
        release.wait(120)

    def sleep() -> None:
        started = time.monotonic()
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT SLEEP(30)" if vendor == "mysql" else "SELECT pg_sleep(30)")
                slept["result"] = str(cursor.fetchone()[0])
        except Exception as exc:
            slept["result"] = f"{type(exc).__name__}: {exc}"[:120]
        slept["seconds"] = round(time.monotonic() - started, 2)

    threads = [threading.Thread(target=hold) for _ in range(THREADS)]
    for t in threads:
        t.start()
    ready.wait(30)
    sleeper = None
    if args.sleeper:
        sleeper = threading.Thread(target=sleep)
        sleeper.start()
        poll(lambda: sleeping(vendor), timeout=20, what="the 30 s query running on the server")
    report = forkhooks.close()
    if sleeper is not None:
        sleeper.join(60)
    print(json.dumps({"sessions": sessions, "closed": report.connections, "failures": report.failures, **slept}))
    sys.stdout.flush()
    sys.stdin.read()
    release.set()
    for t in threads:
        t.join(10)


if __name__ == "__main__":
    main()
