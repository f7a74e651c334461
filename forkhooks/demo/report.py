"""What the demo shows: a progress bar, a backend sampler, the before/after table."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TextIO

from . import loadgen
from .process import poll
from .procnet import server_sockets


@dataclass
class Outcome:
    """What one run measured."""

    results: loadgen.Results
    backends_max: int
    backends_left: int
    master_max: int | None  # None when `ss` is unavailable


class Progress:
    """A one-line progress bar on stderr, redrawn with \\r at most ten times a second."""

    def __init__(self, label: str, total: int, stream: TextIO = sys.stderr, width: int = 30) -> None:
        self.label, self.total, self.stream, self.width = label, total, stream, width
        self.started = time.monotonic()
        self._drawn = 0.0
        self(0)

    def __call__(self, done: int) -> None:
        now = time.monotonic()
        if done < self.total and done and now - self._drawn < 0.1:
            return
        self._drawn = now
        filled = self.width * done // self.total
        bar = "#" * filled + "." * (self.width - filled)
        self.stream.write(f"\r  {self.label:<18} [{bar}] {done}/{self.total}  {now - self.started:5.1f}s")
        self.stream.flush()

    def finish(self) -> None:
        """End the bar's line."""
        self.stream.write("\n")
        self.stream.flush()


class Sampler:
    """Samples the server's client backends (one application_name) and the master's sockets in a thread."""

    def __init__(self, dsn: str, app_name: str, master_pid: int, interval: float = 0.25) -> None:
        import psycopg

        self._conn: Any = psycopg.connect(
            dsn, autocommit=True, connect_timeout=5, application_name="forkhooks-demo-observer"
        )
        self._app_name, self._master, self._interval = app_name, master_pid, interval
        self._port = int(self._conn.info.port)
        self.backends_max = 0
        self.master_max: int | None = 0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="forkhooks-demo-sampler", daemon=True)

    def __enter__(self) -> Sampler:
        self._sample()  # once before the load, so a short run still has a measurement
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
        self._conn.close()

    def backends(self) -> int:
        """Client backends on the server with this run's application_name."""
        # Also "<name>:<role>:<pid>": forkhooks may label a process's connections with its role and pid.
        row = self._conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'"
            " AND (application_name = %s OR application_name LIKE %s)",
            [self._app_name, self._app_name + ":%"],
        ).fetchone()
        return int(row[0])

    def _sample(self) -> None:
        self.backends_max = max(self.backends_max, self.backends())
        if self.master_max is not None:
            try:
                self.master_max = max(self.master_max, server_sockets(self._master, self._port))
            except (OSError, subprocess.CalledProcessError):  # no `ss` here: say n/a, not 0
                self.master_max = None

    def _loop(self) -> None:
        while not self._done.wait(self._interval):
            self._sample()

    def stop(self) -> None:
        """Stop sampling (once the load is done)."""
        if self._thread.is_alive():
            self._done.set()
            self._thread.join(10)
            self._sample()

    def left_after_shutdown(self, timeout: float) -> int:
        """Backends still there after gunicorn exited, polled until none or `timeout` seconds."""
        with contextlib.suppress(TimeoutError):
            poll(lambda: self.backends() == 0, timeout=timeout, what="the run's backends gone")
        return self.backends()


def table(without: Outcome, with_: Outcome, workers: int) -> str:
    """The before/after table as aligned text."""

    def ms(value: float) -> str:
        return f"{value:.1f} ms"

    def na(value: int | None) -> str:
        return "n/a" if value is None else str(value)

    rows: list[tuple[str, Callable[[Outcome], str]]] = [
        ("requests", lambda o: str(o.results.requests)),
        ("failed", lambda o: str(o.results.failed)),
        ("wrong rows (another request's answer)", lambda o: str(o.results.wrong)),
        ("workers that served", lambda o: f"{len(o.results.pids)}/{workers}"),
        ("p50 latency (answered requests)", lambda o: ms(o.results.percentile(50))),
        ("p99 latency (answered requests)", lambda o: ms(o.results.percentile(99))),
        ("server backends during the run (max)", lambda o: str(o.backends_max)),
        ("server backends left after shutdown", lambda o: str(o.backends_left)),
        ("master's backends (its sockets to the server)", lambda o: na(o.master_max)),
    ]
    lines = [f"{'':<46} {'without forkhooks':>18} {'with forkhooks':>15}"]
    lines += [f"{name:<46} {cell(without):>18} {cell(with_):>15}" for name, cell in rows]
    return "\n".join(lines)
