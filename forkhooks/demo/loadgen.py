"""A small asyncio HTTP/1.1 load generator that checks each answer is the request's own."""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Results:
    """Counts from one load run."""

    requests: int = 0
    ok: int = 0
    failed: int = 0
    wrong: int = 0  # answered 200 with another request's row: a data leak
    pids: Counter[int] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)

    def percentile(self, p: float) -> float:
        """Latency percentile in milliseconds (0 when nothing was measured)."""
        if not self.latencies:
            return 0.0
        ordered = sorted(self.latencies)
        return 1000 * ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]

    def summary(self) -> str:
        """One line for logs and assertion messages."""
        return (
            f"{self.requests} requests: {self.ok} ok, {self.failed} failed, {self.wrong} wrong rows, "
            f"{len(self.pids)} workers served, errors {dict(self.errors.most_common(4))}"
        )


async def _request(target: str, path: str, timeout: float) -> tuple[int, bytes]:
    if target.startswith("unix:"):
        reader, writer = await asyncio.open_unix_connection(target[5:])
        host = "localhost"
    else:
        host, _, port = target.rpartition(":")
        reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        await writer.drain()
        raw = await asyncio.wait_for(reader.read(), timeout)
    finally:
        writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1]) if head.startswith(b"HTTP/") else 0
    if b"transfer-encoding: chunked" in head.lower():
        body = _dechunk(body)
    return status, body


def _dechunk(body: bytes) -> bytes:
    out = bytearray()
    while body:
        size_line, _, rest = body.partition(b"\r\n")
        size = int(size_line.split(b";")[0] or b"0", 16)
        if size == 0:
            break
        out += rest[:size]
        body = rest[size + 2 :]
    return bytes(out)


async def _run(
    target: str,
    path: str,
    requests: int,
    concurrency: int,
    timeout: float,
    progress: Callable[[int], None] | None,
    stop_when: Callable[[Results], bool] | None,
) -> Results:
    results = Results()
    todo = iter(range(requests))
    stopped = asyncio.Event()

    async def client() -> None:
        me = asyncio.current_task()
        for _ in todo:
            # Ctrl-C cancels us; asyncio.wait_for can swallow that CancelledError when the request
            # finishes at the same moment (Python 3.11/3.12), and the loop would go on for ever.
            if me is not None and me.cancelling():
                raise asyncio.CancelledError
            tag = secrets.token_hex(8)
            started = time.perf_counter()
            try:
                status, body = await asyncio.wait_for(_request(target, f"{path}?tag={tag}", timeout), timeout)
                answer = json.loads(body) if status == 200 else None
            except Exception as exc:  # refused, reset, timed out, garbled
                status, answer = 0, None
                results.errors[type(exc).__name__] += 1
            results.requests += 1
            if answer is None:
                results.failed += 1
                if status:
                    results.errors[f"HTTP {status}"] += 1
            elif answer.get("tag") != tag:
                results.wrong += 1
            else:
                results.ok += 1
                results.pids[answer["pid"]] += 1
                results.latencies.append(time.perf_counter() - started)
            if progress is not None:
                progress(results.requests)
            if stop_when is not None and stop_when(results):
                stopped.set()
                return

    clients = [asyncio.ensure_future(client()) for _ in range(concurrency)]
    proven = asyncio.ensure_future(stopped.wait())
    try:
        pending: set[asyncio.Future[Any]] = {*clients, proven}
        while not stopped.is_set() and not all(c.done() for c in clients):
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for task in done - {proven}:
                task.result()  # a client's own error (never a request's: those are counted)
    finally:
        # Requests still in flight once the outcome is known are dropped, not counted:
        # a control run waits for no timeout it does not need.
        for task in (*clients, proven):
            task.cancel()
        await asyncio.gather(*clients, proven, return_exceptions=True)
    return results


def run(
    target: str,
    requests: int,
    *,
    concurrency: int = 64,
    timeout: float = 15.0,
    path: str = "/echo",
    progress: Callable[[int], None] | None = None,
    stop_when: Callable[[Results], bool] | None = None,
) -> Results:
    """Send `requests` GET {path}?tag=… to `target` ("host:port" or "unix:/path") and check each answer.

    `stop_when(results)` true ends the run early (in-flight requests are dropped): a control
    run stops as soon as the failure it exists to show is proven.
    """
    return asyncio.run(_run(target, path, requests, concurrency, timeout, progress, stop_when))


def proven(*, wrong: int = 1, failed: int = 20) -> Callable[[Results], bool]:
    """A stop_when for control runs: `wrong` rows leaked or `failed` requests failed."""
    return lambda r: r.wrong >= wrong or r.failed >= failed


def get(target: str, path: str, timeout: float = 2.0) -> tuple[int, bytes]:
    """One GET request (status, body); raises on connection errors."""
    return asyncio.run(_request(target, path, timeout))
