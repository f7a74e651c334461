"""gunicorn processes for the benchmark: start, wait ready (bounded), find workers, measure PSS, stop."""

from __future__ import annotations

import json
import os
import socket
import sys
from collections.abc import Callable
from pathlib import Path

from forkhooks.demo import loadgen
from forkhooks.demo.process import ServerProcess, children

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
PYTHON = sys.executable
WSGI = "tests.testsite.wsgi:application"


def free_port() -> int:
    """A TCP port nobody listens on right now (wrk speaks TCP only)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def child_env(dsn: str, extra: dict[str, str]) -> dict[str, str]:
    """The environment of a process running the example project."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GUNICORN_", "FORKHOOKS_"))}
    env.update(FORKHOOKS_DSN=dsn, PYTHONUNBUFFERED="1", DJANGO_SETTINGS_MODULE="tests.testsite.settings")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(EXAMPLES), str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    env.update(extra)
    return env


def gunicorn_argv(args: list[str], port: int, workers: int, wsgi: str = WSGI) -> list[str]:
    """argv for gunicorn, sync workers, on 127.0.0.1:`port`, serving `wsgi`."""
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
        wsgi,
    ]


def pss_kib(pid: int) -> int:
    """Proportional set size of one process, in KiB, from /proc/<pid>/smaps_rollup."""
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1])
    raise RuntimeError(f"no Pss line for {pid}")


class Gunicorn(ServerProcess):
    """One gunicorn master with its workers on a TCP port (wrk speaks TCP only), in its own session."""

    def __init__(
        self, args: list[str], dsn: str, env: dict[str, str], log_path: Path, *, workers: int = 4, wsgi: str = WSGI
    ) -> None:
        self.port = free_port()
        self.workers = workers
        self.argv = gunicorn_argv(args, self.port, workers, wsgi)
        super().__init__(
            self.argv, cwd=EXAMPLES, env=child_env(dsn, env), log_path=log_path, target=f"127.0.0.1:{self.port}"
        )

    def worker_pids(self) -> list[int]:
        """The master's worker processes right now."""
        return children(self.proc.pid)

    def wait_ready(self, timeout: float = 60.0, also: Callable[[], bool] | None = None) -> None:
        """Wait (bounded) until /health answers and every worker exists."""
        super().wait_ready(timeout, also=lambda: len(self.worker_pids()) == self.workers)

    def echo(self, tag: str, timeout: float = 10.0) -> dict[str, object]:
        """One GET /echo?tag=…, its JSON answer; raises unless 200."""
        status, body = loadgen.get(self.target, f"/echo?tag={tag}", timeout)
        if status != 200:
            raise RuntimeError(f"/echo answered {status}: {body[:200]!r}")
        answer: dict[str, object] = json.loads(body)
        return answer
