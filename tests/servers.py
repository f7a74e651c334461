"""Start real server processes and wait for them with a bound, never a fixed sleep."""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from forkhooks.demo import loadgen
from forkhooks.demo.process import ServerProcess, poll
from forkhooks.demo.procnet import server_sockets

from .harness import EXAMPLES, PYTHON, ROOT, child_env

__all__ = ["Loaded", "Server", "gunicorn", "load", "poll", "run_json", "start"]


class Server(ServerProcess):
    """A server subprocess on a Unix socket in `tmp`, running the example project's environment."""

    def __init__(
        self, argv: list[str], dsn: str, tmp: Path, *, env: dict[str, str] | None = None, cwd: Path = EXAMPLES
    ) -> None:
        self.sock = tmp / "app.sock"
        super().__init__(
            [a.replace("{sock}", str(self.sock)) for a in argv],
            cwd=cwd,
            env=child_env(dsn, **(env or {})),
            log_path=tmp / "server.log",
            target=f"unix:{self.sock}",
        )


def start(argv: list[str], dsn: str, tmp: Path, *, env: dict[str, str] | None = None, cwd: Path = EXAMPLES) -> Server:
    """Start a Server and wait until it answers; kill it if it never does."""
    server = Server(argv, dsn, tmp, env=env, cwd=cwd)
    try:
        server.wait_ready()
    except BaseException:
        server.kill()
        raise
    return server


def gunicorn(*args: str) -> list[str]:
    """argv for gunicorn with 4 preloaded workers on the test socket."""
    return [PYTHON, "-m", "gunicorn", "--preload", "-w", "4", "-b", "unix:{sock}", "--graceful-timeout", "10", *args]


def run_json(
    module: str, *args: str, dsn: str, env: dict[str, str] | None = None, timeout: float = 120
) -> tuple[Any, str]:
    """Run `python -m module args` in the example project's environment: (its last JSON line, its stderr)."""
    done = subprocess.run(
        [PYTHON, "-m", module, *args],
        cwd=ROOT,
        env=child_env(dsn, **(env or {})),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1]), done.stderr


@dataclass
class Loaded:
    """What one load run against a server measured."""

    results: loadgen.Results
    master_before: int  # the master's sockets to PostgreSQL before the load
    master_after: int  # ... and after it
    code: int | None  # the server's exit code (None for a control, which is killed)


def load(server: Server, requests: int, *, control: bool = False, concurrency: int = 64) -> Loaded:
    """Send `requests` tagged requests, then stop the server.

    A control run (without forkhooks) stops as soon as the failure is proven, each request
    bounded to 3 s, and the server is killed; otherwise it is stopped with SIGTERM.
    """
    code = None
    try:
        before = server_sockets(server.pid)
        if control:
            stop = loadgen.proven()
            results = loadgen.run(server.target, requests, concurrency=concurrency, timeout=3, stop_when=stop)
        else:
            results = loadgen.run(server.target, requests, concurrency=concurrency)
        after = server_sockets(server.pid)
    finally:
        if control:
            server.kill()
        else:
            code = server.stop()
    return Loaded(results, before, after, code)
