"""Time forkhooks.discard() (gunicorn's post_fork) in real forked children; prints JSON.

Run by bench/run.py in a subprocess with the example project's environment:
Django set up, the start-up query run, so the parent holds a pooled connection
and an open psycopg pool (min_size connections) when it forks.
"""

from __future__ import annotations

import json
import os
import select
import struct
import sys
import time
from typing import Any

DEADLINE_S = 10.0  # per child: a child that does not report in time is killed and the run fails


class _Silent:
    """A logger that drops everything: separates forkhooks' own work from writing its log line."""

    def info(self, msg: str, *args: Any) -> None: ...
    def warning(self, msg: str, *args: Any) -> None: ...
    def exception(self, msg: str, *args: Any) -> None: ...


def _one_fork(silent: bool) -> int:
    """Fork once; the child times discard() and sends the nanoseconds back through a pipe."""
    import forkhooks

    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        code = 1
        try:
            os.close(read_end)
            started = time.perf_counter_ns()
            forkhooks.discard(who="bench child", log=_Silent() if silent else None)
            elapsed = time.perf_counter_ns() - started
            os.write(write_end, struct.pack("<q", elapsed))
            code = 0
        finally:
            os._exit(code)  # no atexit, no finalizers: the parent's objects are not ours
    os.close(write_end)
    try:
        ready, _, _ = select.select([read_end], [], [], DEADLINE_S)
        data = os.read(read_end, 8) if ready else b""
    finally:
        os.close(read_end)
        _reap(pid)
    if len(data) != 8:
        raise RuntimeError(f"child {pid} reported nothing within {DEADLINE_S}s")
    return int(struct.unpack("<q", data)[0])


def _reap(pid: int) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline:
        if os.waitpid(pid, os.WNOHANG)[0]:
            return
        time.sleep(0.001)  # a poll interval
    os.kill(pid, 9)
    os.waitpid(pid, 0)


def _state() -> dict[str, Any]:
    from django.db import connection

    pool = connection.pool
    return {"wrapper_connected": connection.connection is not None, "pool_size": pool.get_stats().get("pool_size", 0)}


def measure(forks: int) -> dict[str, Any]:
    """Time discard() in `forks` children with the pool open, then after close(); logged and silent."""
    import django

    django.setup()
    import forkhooks
    from forkhooks.demo.site.startup import read_feature_flags

    read_feature_flags()  # the wrapper holds a pooled connection, the pool is open
    from django.db import connection

    connection.pool.wait(timeout=10)  # all min_size connections open: the worst case to discard
    state = _state()
    out: dict[str, Any] = {"state": state}
    # Logged and silent alternate, so machine noise hits both alike. Logged is
    # what post_fork costs (the example's LOGGING sends forkhooks' line to stderr).
    for phase in ("open_pool", "after_close"):
        if phase == "after_close":
            # What gunicorn's post_fork really meets: when_ready/pre_fork closed the master's.
            forkhooks.close(who="bench parent")
        times: dict[str, list[int]] = {"logged": [], "silent": []}
        for _ in range(forks):
            times["logged"].append(_one_fork(silent=False))
            times["silent"].append(_one_fork(silent=True))
        out[phase] = times
    return out


def main() -> None:
    """Entry point: `python bench/forkcost.py [forks]`."""
    forks = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    print("FORKCOST " + json.dumps(measure(forks)), flush=True)


if __name__ == "__main__":
    main()
