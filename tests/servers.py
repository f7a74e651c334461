"""Start real server processes and wait for them with a bound, never a fixed sleep."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from forkhooks.demo import loadgen
from forkhooks.demo.process import ServerProcess, children, poll
from forkhooks.demo.procnet import server_sockets

from .harness import EXAMPLES, PYTHON, ROOT, child_env, logged_pids

__all__ = [
    "ASGI",
    "WORKERS",
    "WSGI",
    "booted_workers",
    "Loaded",
    "Server",
    "children",
    "gunicorn",
    "load",
    "poll",
    "ready_workers",
    "run_json",
    "serve",
    "start",
    "stop_group",
    "wait_workers",
]

# The tests' site (tests/testsite: the demo's project and the tests' views), as gunicorn and uWSGI name it.
WSGI = "tests.testsite.wsgi:application"
ASGI = "tests.testsite.asgi:application"
WORKERS = 4  # gunicorn(): -w 4


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


def serve(dsn: str, tmp_path: Path, args: list[str], app: str, env: dict[str, str] | None = None) -> Server:
    """Start gunicorn with 4 preloaded workers and wait until it answers."""
    return start(gunicorn(*args, app), dsn, tmp_path, env=env)


def answers_at_all(server: Server) -> bool:
    """True once the server answers HTTP, whatever the status; raises if it exited."""
    if server.proc.poll() is not None:
        raise RuntimeError(f"server exited with {server.proc.returncode}:\n{server.log()[-3000:]}")
    try:
        return loadgen.get(server.target, "/health")[0] > 0
    except OSError:
        return False


def gevent_booted(server: Server, workers: int = 4) -> Server:
    """`server`, once all its gevent workers have booted (a late one would get no load); killed if they do not."""
    try:
        poll(
            lambda: server.log().count("after gevent patched") == workers,
            timeout=30,
            what=f"{workers} gevent workers booted",
        )
    except BaseException:
        server.kill()
        raise
    return server


def ready_workers(server: Server) -> set[int]:
    """Live workers that warmed their pool (post_worker_init logged 'opened'): they accept requests."""
    return set(children(server.pid)) & logged_pids(server.log(), "opened")


def wait_workers(
    server: Server, *, excluding: set[int] | frozenset[int] = frozenset(), timeout: float = 20
) -> set[int]:
    """Poll until 4 warmed workers run, none of them in `excluding`; return their pids."""
    found: set[int] = set()

    def check() -> bool:
        nonlocal found
        found = ready_workers(server)
        live = set(children(server.pid))
        return len(found) == WORKERS and not (found & excluding) and len(live) == WORKERS

    poll(check, timeout=timeout, what=f"{WORKERS} fresh warmed workers")
    return found


def closed_pools(log: str) -> set[int]:
    """Workers that logged closing their pool."""
    return logged_pids(log, r"closed \d+ connections? and 1 pool")


def four_opened(log: str) -> bool:
    """Every one of the 4 workers has opened its pool: it is booted, its signal handlers set."""
    return len(logged_pids(log, "opened")) == 4


def booted_workers(log: str) -> set[int]:
    """Pids of the workers gunicorn booted (its own line: "Booting worker with pid: N")."""
    return {int(p) for p in re.findall(r"Booting worker with pid: (\d+)", log)}


def stop_group(
    name: str,
    args: list[str],
    app: str,
    sig: signal.Signals,
    dsn: str,
    tmp_path: Path,
    booted: Callable[[str], bool] = four_opened,
) -> tuple[set[int], str]:
    """Serve 100 requests, then signal the whole group; (workers that closed their pool, the log)."""
    if name == "asgi":
        pytest.importorskip("gunicorn.workers.gasgi", reason="gunicorn's native asgi worker needs gunicorn >= 24")
    server = start(gunicorn(*args, app), dsn, tmp_path)
    try:
        # Booted, not just forked: gunicorn drops a signal that reaches a worker before its own handlers are set.
        poll(lambda: booted(server.log()), timeout=30, what="4 workers booted")
        results = loadgen.run(server.target, 100, concurrency=16)
        assert (results.failed, results.wrong) == (0, 0), results.summary()
        os.killpg(server.pid, sig)
        server.proc.wait(30)
    finally:
        server.kill()
    return closed_pools(server.log()), server.log()


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
