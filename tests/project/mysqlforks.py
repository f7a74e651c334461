"""Fork from a Django process on MySQL that holds a persistent connection; print what parent and children saw.

    FORKHOOKS_MYSQL_DSN=mysql://... python -m tests.project.mysqlforks --n 50 [--forkhooks] [--django-pr]

Children run one query through Django and exit normally (finalizers run), one at a
time. The parent checks its own session after every child and prints one JSON
line: counts, never a verdict (the tests decide). --django-pr registers, before
forkhooks, the at-fork callback Django's open PR #20803 adds: in each child, clear
the backends' `_connection_pools` and drop the inherited wrappers.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import sys
from typing import Any

import django

CHILD_ALARM = 20  # a child stuck on a shared socket is killed, not waited for forever


def session() -> int:
    """This process's MySQL session id, through Django's default connection."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT CONNECTION_ID()")
        return int(cursor.fetchone()[0])


def django_pr_after_fork_in_child() -> None:
    """As Django's PR #20803 does in a child: forget the pools and the inherited wrappers."""
    from asgiref.local import Local
    from django.db import connections
    from django.db.backends.base.base import BaseDatabaseWrapper

    stack = [BaseDatabaseWrapper]
    while stack:
        cls = stack.pop()
        stack.extend(cls.__subclasses__())
        if isinstance(vars(cls).get("_connection_pools"), dict):
            vars(cls)["_connection_pools"].clear()
    connections._connections = Local(connections.thread_critical)


def child(tag: str, write_end: int) -> None:
    """Query once, report on the pipe, then exit as a program does (finalizers run)."""
    signal.alarm(CHILD_ALARM)
    answer: dict[str, Any]
    try:
        from django.db import connection

        with connection.cursor() as cursor:
            cursor.execute("SELECT %s, CONNECTION_ID()", [tag])
            got, sid = cursor.fetchone()
        answer = {"tag": got, "session": int(sid)}
    except Exception as exc:
        answer = {"error": type(exc).__name__}
    os.write(write_end, json.dumps(answer).encode())
    os.close(write_end)
    sys.exit(0)


def main() -> None:
    """Run the forks and print the counts."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=50)
    parser.add_argument("--forkhooks", action="store_true")
    parser.add_argument("--django-pr", action="store_true")
    args = parser.parse_args()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.project.mysqlsite.settings")
    django.setup()
    if args.django_pr:  # registered at import in Django: before forkhooks' callback
        os.register_at_fork(after_in_child=django_pr_after_fork_in_child)
    if args.forkhooks:
        import forkhooks

        forkhooks.install()
    first = session()
    counts = {"own": 0, "shared": 0, "wrong": 0, "child_failed": 0, "parent_lost": 0}
    for _ in range(args.n):
        tag = secrets.token_hex(8)
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(read_end)
            child(tag, write_end)
        os.close(write_end)
        with os.fdopen(read_end, "rb") as pipe:
            raw = pipe.read()
        os.waitpid(pid, 0)
        answer = json.loads(raw) if raw else {"error": "no answer"}
        if "error" in answer:
            counts["child_failed"] += 1
        elif answer["tag"] != tag:
            counts["wrong"] += 1
        elif answer["session"] == first:
            counts["shared"] += 1
        else:
            counts["own"] += 1
        try:
            if session() != first:
                counts["parent_lost"] += 1
        except Exception:  # the parent's session was killed under it: Django reconnects next time
            from django.db import connection

            counts["parent_lost"] += 1
            connection.close()
    from django.db import connection

    counts["parent_kept"] = int(session() == first)
    connection.close()
    print(json.dumps(counts), flush=True)


if __name__ == "__main__":
    main()
