"""Start real server processes and wait for them with a bound, never a fixed sleep."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from forkhooks.demo.process import ServerProcess, poll

from .conftest import EXAMPLES, PYTHON, ROOT, child_env

__all__ = ["Server", "gunicorn", "poll", "run_json", "start"]


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
