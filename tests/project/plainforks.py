"""No Django: forkhooks.install() plus a tracked pool, then os.fork() children that query; print counts.

    python -m tests.project.plainforks psycopg_pool --n 200 [--no-track]

The pool is created and used before the first fork, as at import. Children
query once and exit; the parent queries through its pool after every fork.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import secrets
import signal
import tempfile
from collections.abc import Callable
from typing import Any

import forkhooks

DSN = os.environ["FORKHOOKS_DSN"]
SQL = "SELECT %s::text, pg_backend_pid()"
CHILD_ALARM = 20


def build(kind: str, track: Callable[[Any], Any]) -> Callable[[str], tuple[str, int]]:
    """Create the pool of `kind` (tracked or not) and return a query function on it."""
    if kind in ("psycopg2", "psycopg_pool", "sqlalchemy"):
        os.environ["FORKHOOKS_TRACK"] = "1" if track is forkhooks.track else "0"
        module = __import__(f"plainwsgi.{kind}_app", fromlist=["query"])
        return module.query
    if kind == "null_pool":
        from psycopg_pool import NullConnectionPool

        null = track(NullConnectionPool(DSN, max_size=2, open=True))

        def query_null(tag: str) -> tuple[str, int]:
            with null.connection() as conn:
                return conn.execute(SQL, [tag]).fetchone()

        return query_null
    if kind == "async_pool":
        from psycopg_pool import AsyncConnectionPool

        pool = track(AsyncConnectionPool(DSN, min_size=1, max_size=2, open=False))
        loop = asyncio.new_event_loop()  # the parent's loop; a child runs its own

        async def one(tag: str) -> tuple[str, int]:
            await pool.open()  # what an app's startup does; a no-op when already open
            async with pool.connection() as conn:
                cur = await conn.execute(SQL, [tag])
                return await cur.fetchone()

        async def one_and_close(tag: str) -> tuple[str, int]:
            try:
                return await one(tag)
            finally:
                await pool.close(timeout=5)  # before asyncio.run ends its loop, as an app's shutdown would

        def query_async(tag: str) -> tuple[str, int]:
            if os.getpid() != parent:  # test scaffolding only: the child is a new process with a new loop
                return asyncio.run(one_and_close(tag))
            return loop.run_until_complete(one(tag))

        parent = os.getpid()
        return query_async
    if kind == "per_process":
        import psycopg

        conn = forkhooks.PerProcess(lambda: psycopg.connect(DSN, autocommit=True))
        if track is not forkhooks.track:  # the control: one connection, built once, shared
            conn.get()
            shared = conn._obj

            def query_shared(tag: str) -> tuple[str, int]:
                return shared.execute(SQL, [tag]).fetchone()

            return query_shared

        def query_per_process(tag: str) -> tuple[str, int]:
            return conn.execute(SQL, [tag]).fetchone()

        return query_per_process
    raise SystemExit(f"unknown kind {kind!r}")


def main() -> None:
    """Fork n children from a process holding a tracked pool; print one JSON line of counts."""
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "kind", choices=["psycopg2", "psycopg_pool", "sqlalchemy", "null_pool", "async_pool", "per_process"]
    )
    parser.add_argument("--n", type=int, default=100)
    parser.add_argument("--no-track", action="store_true", help="the control: no track(), no install()")
    parser.add_argument("--sequential", action="store_true", help="wait for each child before going on")
    args = parser.parse_args()

    query = build(args.kind, (lambda obj: obj) if args.no_track else forkhooks.track)
    parent_backend = query("startup")[1]
    if not args.no_track:
        forkhooks.install()

    out = tempfile.TemporaryFile()
    running: list[int] = []
    parent_errors, parent_backends, first_error = 0, set(), ""
    for i in range(args.n):
        tag = f"{i}-{secrets.token_hex(6)}"
        pid = os.fork()
        if pid == 0:
            signal.alarm(CHILD_ALARM)
            try:
                got, backend = query(tag)
                line = {"tag": tag, "got": got, "backend": backend}
            except Exception as exc:
                line = {"tag": tag, "error": f"{type(exc).__name__}: {exc}"[:200]}
            os.write(out.fileno(), (json.dumps(line) + "\n").encode())
            gc.collect()
            os._exit(0)
        running.append(pid)
        if args.sequential:
            os.waitpid(running.pop(), 0)
        try:
            parent_backends.add(query(f"parent-{i}")[1])
        except Exception as exc:
            parent_errors += 1
            first_error = first_error or f"{type(exc).__name__}: {exc}"[:200]
        while len(running) >= 8:
            os.waitpid(running.pop(0), 0)
    for pid in running:
        os.waitpid(pid, 0)
    out.seek(0)
    results = [json.loads(line) for line in out.read().decode().splitlines()]
    answered = [r for r in results if "error" not in r]
    print(
        json.dumps(
            {
                "kind": args.kind,
                "forks": args.n,
                "answers": len(results),
                "ok": sum(r["got"] == r["tag"] and r["backend"] not in parent_backends for r in answered),
                "wrong": sum(r["got"] != r["tag"] for r in answered),
                "shared": sum(r["backend"] in parent_backends | {parent_backend} for r in answered),
                "child_errors": len(results) - len(answered),
                "child_error": next((r["error"] for r in results if "error" in r), ""),
                "parent_errors": parent_errors,
                "parent_error": first_error,
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    main()
