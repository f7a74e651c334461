"""A server subprocess (gunicorn, uWSGI) for the demo, the benchmark and the tests: bounded waits only."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from . import loadgen


def poll(check: Callable[[], bool], *, timeout: float, what: str, interval: float = 0.05) -> None:
    """Call `check` until it is true; raise TimeoutError naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if check():
                return
        except OSError:  # not listening yet
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not within {timeout}s")
        time.sleep(interval)  # a poll interval, not a wait for readiness


def children(pid: int) -> list[int]:
    """Pids whose parent is `pid`, from /proc (a server's workers)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:  # exited meanwhile
            continue
        # Field 4 is the ppid; the command name (field 2) may hold spaces, so split after its ')'.
        if int(stat.rpartition(")")[2].split()[1]) == pid:
            found.append(int(entry))
    return sorted(found)


class ServerProcess:
    """A server in its own session (Ctrl-C reaches us, not it; cleanup can kill its whole group)."""

    def __init__(self, argv: list[str], *, cwd: Path, env: dict[str, str], log_path: Path, target: str) -> None:
        self.target = target
        self.log_path = log_path
        with open(log_path, "wb") as log:
            self.proc = subprocess.Popen(
                argv, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        self.pid = self.proc.pid

    def log(self) -> str:
        """The server's combined output so far."""
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, timeout: float = 60.0, also: Callable[[], bool] | None = None) -> None:
        """Wait until GET /health answers 200 (and `also()` holds); raise with the log if it exits or never does."""

        def ready() -> bool:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.log()[-4000:]}")
            return loadgen.get(self.target, "/health")[0] == 200 and (also is None or also())

        try:
            poll(ready, timeout=timeout, what="server ready")
        except TimeoutError:
            raise RuntimeError(f"server not ready within {timeout}s:\n{self.log()[-4000:]}") from None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        """Signal the master, wait for it with a bound, then kill what is left of its group; its exit code."""
        try:
            if self.proc.poll() is None:
                self.proc.send_signal(sig)
            try:
                return self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                raise TimeoutError(f"server did not stop within {timeout}s:\n{self.log()[-4000:]}") from None
        finally:
            self.kill()

    def kill(self) -> None:
        """SIGKILL the whole process group: a worker the master lost track of dies too."""
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except ProcessLookupError:  # group already gone
            pass
        if self.proc.poll() is None:
            self.proc.wait(10)
