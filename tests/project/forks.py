"""Fork from a Django process that holds a persistent connection; print what parent and children saw.

    DJANGO_SETTINGS_MODULE=tests.project.settings python -m tests.project.forks os.fork --n 1000

Children query and exit; none calls connection.close() unless --naive-close asks
for the blog post's workaround. The parent checks its own session after every
fork and prints one JSON line: counts, never a verdict (the tests decide).
"""

from __future__ import annotations

import argparse
import gc
import json
import multiprocessing
import os
import secrets
import signal
import sys
import tempfile
import threading
from concurrent.futures import ProcessPoolExecutor, wait
from typing import Any

import django

CHILD_ALARM = 20  # a child stuck on a shared socket is killed, not waited for forever


def backend() -> int:
    """This process's PostgreSQL backend pid, through Django's default connection."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return int(cursor.fetchone()[0])


def echo(tag: str) -> dict[str, Any]:
    """Send `tag` through PostgreSQL and say which backend answered."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT %s::text, pg_backend_pid()", [tag])
        got, pid = cursor.fetchone()
    return {"tag": tag, "got": got, "backend": pid, "pid": os.getpid()}


def naive_close() -> None:
    """The blog post's workaround: close the inherited connection in the child."""
    from django.db import connection

    connection.close()


def child_task(tag: str, close_first: bool = False) -> dict[str, Any]:
    """What each forked child does; errors are answers too, so they are counted."""
    try:
        if close_first:
            naive_close()
        answer = echo(tag)
    except Exception as exc:
        return {"tag": tag, "error": f"{type(exc).__name__}: {exc}".strip()[:200]}
    preload = sys.modules.get(PRELOAD)
    if preload is not None:  # forked from a forkserver that preloaded Django: its backend is not ours either
        answer["preload_backend"] = preload.BACKEND
    return answer


PRELOAD = "tests.project.forkserver_preload"


class Parent:
    """The parent's own session: queried after every fork, must stay the same backend."""

    def __init__(self) -> None:
        self.before = backend()
        self.queries = 0
        self.errors = 0
        self.first_error = ""
        self.backends: set[int] = {self.before}

    def check(self) -> None:
        self.queries += 1
        try:
            self.backends.add(backend())
        except Exception as exc:
            self.errors += 1
            self.first_error = self.first_error or f"{type(exc).__name__}: {exc}".strip()[:200]

    def report(self) -> dict[str, Any]:
        after: int | str
        try:
            after = backend()
        except Exception as exc:
            after = type(exc).__name__
        return {
            "parent_backend_before": self.before,
            "parent_backend_after": after,
            "parent_backends": len(self.backends),
            "parent_queries": self.queries,
            "parent_errors": self.errors,
            "parent_error": self.first_error,
        }


def tags(n: int) -> list[str]:
    return [f"{i}-{secrets.token_hex(6)}" for i in range(n)]


def with_os_fork(n: int, parent: Parent, close_first: bool, sequential: bool, at_once: int = 8) -> list[dict[str, Any]]:
    """os.fork() n times; up to `at_once` children run while the parent queries (unless sequential)."""
    out = tempfile.TemporaryFile()
    running: list[int] = []
    for tag in tags(n):
        pid = os.fork()
        if pid == 0:
            signal.alarm(CHILD_ALARM)
            # One write < PIPE_BUF to an O_APPEND file: lines from concurrent children never interleave.
            os.write(out.fileno(), (json.dumps(child_task(tag, close_first)) + "\n").encode())
            # A child doing real work runs the cyclic GC sooner or later, freeing what it
            # inherited from other threads (a Django wrapper is a cycle): do it now, not by luck.
            gc.collect()
            os._exit(0)  # what forking code does: no atexit, no finalizers of inherited objects
        running.append(pid)
        if sequential:
            os.waitpid(running.pop(), 0)
        parent.check()
        while len(running) >= at_once:
            os.waitpid(running.pop(0), 0)
    for pid in running:
        os.waitpid(pid, 0)
    out.seek(0)
    return [json.loads(line) for line in out.read().decode().splitlines()]


def with_executor(n: int, parent: Parent, close_first: bool) -> list[dict[str, Any]]:
    """ProcessPoolExecutor(4) with the fork context; the parent queries while workers run."""
    init = naive_close if close_first else None
    with ProcessPoolExecutor(4, mp_context=multiprocessing.get_context("fork"), initializer=init) as executor:
        futures = [executor.submit(child_task, tag) for tag in tags(n)]
        while wait(futures, timeout=0.01).not_done:  # a poll: the parent works meanwhile
            parent.check()
        parent.check()  # at least once after every child ran: a fast run may finish before the first poll
        return [f.result(timeout=30) for f in futures]


def with_mp_pool(n: int, parent: Parent, close_first: bool) -> list[dict[str, Any]]:
    """multiprocessing.Pool(4) with the fork context; the parent queries while workers run."""
    init = naive_close if close_first else None
    with multiprocessing.get_context("fork").Pool(4, initializer=init) as pool:
        result = pool.map_async(child_task, tags(n), chunksize=1)
        while not result.ready():
            parent.check()
            result.wait(0.01)  # a poll: the parent works meanwhile
        parent.check()  # at least once after every child ran: a fast run may finish before the first poll
        return result.get(timeout=30)


def with_forkserver(n: int, parent: Parent, processes: int) -> list[dict[str, Any]]:
    """A forkserver that preloads a module setting Django up and querying; its pool's workers are forked from it."""
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload([PRELOAD])
    with ctx.Pool(processes) as pool:
        result = pool.map_async(child_task, tags(n), chunksize=1)
        while not result.ready():
            parent.check()
            result.wait(0.01)  # a poll: the parent works meanwhile
        return result.get(timeout=30)


def with_mp_maxtasks(n: int, processes: int, maxtasks: int) -> tuple[list[dict[str, Any]], Parent]:
    """multiprocessing.Pool(fork, maxtasksperchild): replacements are forked from the pool's handler thread.

    The parent connects once the first processes are forked: only replacements inherit its connection.
    """
    with multiprocessing.get_context("fork").Pool(processes, maxtasksperchild=maxtasks) as pool:
        parent = Parent()
        result = pool.map_async(child_task, tags(n), chunksize=1)
        while not result.ready():
            parent.check()
            result.wait(0.01)  # a poll: the parent works meanwhile
        return result.get(timeout=30), parent


def with_thread_holding(
    n: int, parent: Parent, close_first: bool, sequential: bool
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Another thread holds its own connection (and waits) while the main thread forks."""
    from django.db import connections

    held = threading.Event()
    done = threading.Event()
    seen: dict[str, Any] = {}

    def holder() -> None:
        seen["thread_backend_before"] = backend()
        held.set()
        done.wait(120)
        try:
            seen["thread_backend_after"] = backend()
        except Exception as exc:
            seen["thread_error"] = f"{type(exc).__name__}: {exc}".strip()[:200]
        connections.close_all()

    thread = threading.Thread(target=holder)
    thread.start()
    if not held.wait(30):
        raise RuntimeError("the holder thread did not connect within 30s")
    try:
        results = with_os_fork(n, parent, close_first, sequential)
    finally:
        done.set()
        thread.join(60)
    return results, seen


def main() -> None:
    """Run one scenario and print one JSON line of counts."""
    parser = argparse.ArgumentParser()
    parser.add_argument("scenario", choices=["os.fork", "executor", "mp.pool", "thread", "forkserver", "mp.maxtasks"])
    parser.add_argument("--n", type=int, default=100)
    parser.add_argument("--naive-close", action="store_true", help="children call connection.close() first")
    parser.add_argument(
        "--sequential", action="store_true", help="os.fork, thread: wait for each child before going on"
    )
    parser.add_argument("--processes", type=int, default=4, help="forkserver, mp.maxtasks: pool processes")
    parser.add_argument("--maxtasks", type=int, default=10, help="mp.maxtasks: tasks per pool process")
    args = parser.parse_args()
    django.setup()

    extra: dict[str, Any] = {}
    if args.scenario == "mp.maxtasks":
        results, parent = with_mp_maxtasks(args.n, args.processes, args.maxtasks)
    else:
        parent = Parent()
        if args.scenario == "os.fork":
            results = with_os_fork(args.n, parent, args.naive_close, args.sequential)
        elif args.scenario == "executor":
            results = with_executor(args.n, parent, args.naive_close)
        elif args.scenario == "mp.pool":
            results = with_mp_pool(args.n, parent, args.naive_close)
        elif args.scenario == "forkserver":
            results = with_forkserver(args.n, parent, args.processes)
        else:
            results, extra = with_thread_holding(args.n, parent, args.naive_close, args.sequential)

    from django.db import connection

    answered = [r for r in results if "error" not in r]
    summary = {
        "scenario": args.scenario,
        "driver": connection.Database.__name__,
        "forks": args.n,
        "answers": len(results),
        "ok": sum(r["got"] == r["tag"] and r["backend"] != parent.before for r in answered),
        "wrong": sum(r["got"] != r["tag"] for r in answered),
        "shared": sum(r["backend"] in (parent.before, r.get("preload_backend")) for r in answered),
        "child_errors": len(results) - len(answered),
        "child_error": next((r["error"] for r in results if "error" in r), ""),
        "child_processes": len({r["pid"] for r in answered}),
        "preload_backends": len({r["preload_backend"] for r in answered if "preload_backend" in r}),
        "child_backends": len({r["backend"] for r in answered}),
        **parent.report(),
        **extra,
    }
    print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    sys.exit(main())
