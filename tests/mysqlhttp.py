"""Tagged requests to the MySQL site (tests/project/mysqlsite): each answer's tag, worker pid and MySQL session."""

from __future__ import annotations

import asyncio
import json
import secrets
from typing import Any

from forkhooks.demo import loadgen

from . import mariadb
from .servers import Server


async def _send(target: str, n: int, concurrency: int, timeout: float) -> list[dict[str, Any]]:
    """`n` tagged /echo requests, `concurrency` at a time: one row per request (its answer, or its error)."""
    rows: list[dict[str, Any]] = []
    todo = iter(range(n))

    async def client() -> None:
        for _ in todo:
            tag = secrets.token_hex(8)
            try:
                status, body = await asyncio.wait_for(loadgen._request(target, f"/echo?tag={tag}", timeout), timeout)
                rows.append({"sent": tag, **(json.loads(body) if status == 200 else {"error": f"HTTP {status}"})})
            except Exception as exc:  # refused, reset, timed out, garbled
                rows.append({"sent": tag, "error": type(exc).__name__})

    await asyncio.gather(*(client() for _ in range(concurrency)))
    return rows


def tagged(server: Server, n: int, *, timeout: float = 15) -> tuple[loadgen.Results, dict[int, set[int]]]:
    """Send `n` tagged requests, 32 at a time: (the counts, each MySQL session's set of worker pids)."""
    rows = asyncio.run(_send(server.target, n, 32, timeout))
    results = loadgen.Results(requests=len(rows))
    owners: dict[int, set[int]] = {}
    for row in rows:
        if "error" in row:
            results.failed += 1
            results.errors[row["error"]] += 1
        elif row["tag"] != row["sent"]:
            results.wrong += 1
        else:
            results.ok += 1
            results.pids[row["pid"]] += 1
        if "backend" in row:
            owners.setdefault(int(row["backend"]), set()).add(int(row["pid"]))
    return results, owners


def sleeping(mysql_dsn: str) -> int:
    """Queries on the server that are in the /sleep view's SLEEP()."""
    with mariadb.connect(mysql_dsn) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM information_schema.processlist WHERE info LIKE 'SELECT SLEEP(%%'")
        return int(cur.fetchone()[0])


def end_sleeps(mysql_dsn: str) -> None:
    """KILL every session in the /sleep view's SLEEP(): no 30 s query outlives its test."""
    with mariadb.connect(mysql_dsn) as conn, conn.cursor() as cur:
        cur.execute("SELECT id FROM information_schema.processlist WHERE info LIKE 'SELECT SLEEP(%%'")
        for (session,) in cur.fetchall():
            cur.execute(f"KILL {int(session)}")
