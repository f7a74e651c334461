"""gunicorn processes for the benchmark: start, wait ready (bounded), find workers, measure PSS, stop."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from forkhooks import _loadgen

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
PYTHON = sys.executable
WSGI = "exampleproject.wsgi:application"


def poll(check: Callable[[], bool], *, timeout: float, what: str, interval: float = 0.05) -> None:
    """Call `check` until it is true; raise TimeoutError after `timeout` seconds."""
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


def free_port() -> int:
    """A TCP port nobody listens on right now (wrk speaks TCP only)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def child_env(dsn: str, extra: dict[str, str]) -> dict[str, str]:
    """The environment of a process running the example project."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GUNICORN_", "FORKHOOKS_"))}
    env.update(FORKHOOKS_DSN=dsn, PYTHONUNBUFFERED="1", DJANGO_SETTINGS_MODULE="exampleproject.settings")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(EXAMPLES), str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    env.update(extra)
    return env


def gunicorn_argv(args: list[str], port: int, workers: int) -> list[str]:
    """argv for gunicorn, sync workers, on 127.0.0.1:`port`."""
    return [
        PYTHON,
        "-m",
        "gunicorn",
        "-k",
        "sync",
        "-w",
        str(workers),
        "-b",
        f"127.0.0.1:{port}",
        "--graceful-timeout",
        "10",
        *args,
        WSGI,
    ]


def children(pid: int) -> list[int]:
    """Pids whose parent is `pid` (/proc/<pid>/task/*/children is not always compiled in)."""
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


def pss_kib(pid: int) -> int:
    """Proportional set size of one process, in KiB, from /proc/<pid>/smaps_rollup."""
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1])
    raise RuntimeError(f"no Pss line for {pid}")


class Gunicorn:
    """One gunicorn master with its workers on a TCP port, in its own session."""

    def __init__(self, args: list[str], dsn: str, env: dict[str, str], log_path: Path, *, workers: int = 4) -> None:
        self.port = free_port()
        self.target = f"127.0.0.1:{self.port}"
        self.workers = workers
        self.argv = gunicorn_argv(args, self.port, workers)
        self.log_path = log_path
        self._log = open(log_path, "wb")
        self.proc = subprocess.Popen(
            self.argv,
            cwd=EXAMPLES,
            env=child_env(dsn, env),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # so cleanup can signal the whole group
        )

    def log(self) -> str:
        """The server's combined output so far."""
        return self.log_path.read_text(errors="replace")

    def worker_pids(self) -> list[int]:
        """The master's worker processes right now."""
        return children(self.proc.pid)

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Wait (bounded) until /health answers and every worker exists."""

        def ready() -> bool:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gunicorn exited with {self.proc.returncode}:\n{self.log()[-3000:]}")
            status = _loadgen.get(self.target, "/health")[0]
            return status == 200 and len(self.worker_pids()) == self.workers

        try:
            poll(ready, timeout=timeout, what="gunicorn ready")
        except TimeoutError:
            raise RuntimeError(f"gunicorn not ready within {timeout}s:\n{self.log()[-3000:]}") from None

    def echo(self, tag: str, timeout: float = 10.0) -> dict[str, object]:
        """One GET /echo?tag=…, its JSON answer; raises unless 200."""
        status, body = _loadgen.get(self.target, f"/echo?tag={tag}", timeout)
        if status != 200:
            raise RuntimeError(f"/echo answered {status}: {body[:200]!r}")
        answer: dict[str, object] = json.loads(body)
        return answer

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM the master and wait; SIGKILL the whole group past `timeout`."""
        try:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            pass
        finally:
            self.kill()

    def kill(self) -> None:
        """Last resort: SIGKILL the group (workers included), reap the master, close the log."""
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):  # group already gone
            pass
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            pass
        self._log.close()
