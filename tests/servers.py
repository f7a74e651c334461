"""Start real server processes and wait for them with a bound, never a fixed sleep."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from forkhooks import _loadgen

from .conftest import EXAMPLES, PYTHON, child_env


def poll(check: Callable[[], bool], *, timeout: float, what: str, interval: float = 0.05) -> None:
    """Call `check` until it is true; fail after `timeout` seconds saying `what` never happened."""
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


class Server:
    """A server subprocess on a Unix socket, ready when GET /health answers 200."""

    def __init__(
        self, argv: list[str], dsn: str, tmp: Path, *, env: dict[str, str] | None = None, cwd: Path = EXAMPLES
    ) -> None:
        self.sock = tmp / "app.sock"
        self.target = f"unix:{self.sock}"
        self.log_path = tmp / "server.log"
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [a.replace("{sock}", str(self.sock)) for a in argv],
            cwd=cwd,
            env=child_env(dsn, **(env or {})),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, timeout: float = 60.0) -> None:
        def ready() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited with {self.proc.returncode}:\n{self.log()[-4000:]}")
            return _loadgen.get(self.target, "/health")[0] == 200

        try:
            poll(ready, timeout=timeout, what="server ready")
        except TimeoutError:
            raise AssertionError(f"server not ready:\n{self.log()[-4000:]}") from None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        """Signal the master and wait for the whole server to exit."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
            raise AssertionError(f"server did not stop within {timeout}s:\n{self.log()[-4000:]}") from None
        finally:
            self._log.close()

    def kill(self) -> None:
        """Last resort cleanup: the whole process group."""
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(10)
        self._log.close()


def gunicorn(*args: str) -> list[str]:
    """argv for gunicorn with 4 preloaded workers on the test socket."""
    return [PYTHON, "-m", "gunicorn", "--preload", "-w", "4", "-b", "unix:{sock}", "--graceful-timeout", "10", *args]
