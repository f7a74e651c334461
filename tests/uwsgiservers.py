"""Real uWSGI (the pyuwsgi wheel) for the tests: an ini from examples/, started on the test's socket, its log read."""

from __future__ import annotations

import re
from pathlib import Path

import psycopg

from forkhooks.demo.process import children

from .harness import EXAMPLES, PYTHON, app_backends, logged_pids
from .servers import Server, poll, start

WORKERS = 4  # examples/uwsgi.ini: processes = 4
UWSGI = [PYTHON, "-c", "import sys, pyuwsgi; sys.argv[0] = 'uwsgi'; sys.exit(pyuwsgi.run())"]


def ini(
    tmp_path: Path, name: str = "uwsgi.ini", *, drop: tuple[str, ...] = (), first: str = "", last: str = ""
) -> Path:
    """A copy of examples/`name` on the test's Unix socket and site, without the `drop` lines, plus extra lines."""
    example = (EXAMPLES / name).read_text().replace("forkhooks.demo.site.", "tests.testsite.")  # + the tests' views
    lines = [line for line in example.splitlines() if line.strip() not in drop]
    text = "\n".join(lines).replace("http-socket = 127.0.0.1:8000", f"http-socket = {tmp_path / 'app.sock'}")
    # Lines go right after [uwsgi] (before forkhooks' import) or at the end.
    text = text.replace("[uwsgi]\n", f"[uwsgi]\n{first}\n", 1)
    path = tmp_path / "uwsgi.ini"
    path.write_text(f"{text}\n{last}\n")
    return path


def serve(dsn: str, tmp_path: Path, config: Path, *args: str, env: dict[str, str] | None = None) -> Server:
    """Start uWSGI and wait until it answers /health (request lines off: they say nothing here)."""
    # A worker that hangs must not keep a test waiting for uWSGI's default 60 s of mercy.
    fifo = tmp_path / "master.fifo"
    argv = [
        *UWSGI,
        "--ini",
        str(config),
        "--worker-reload-mercy",
        "10",
        "--master-fifo",
        str(fifo),
        "--disable-logging",
    ]
    return start([*argv, *args], dsn, tmp_path, env=env)


MYSQL_SETTINGS = "tests.project.mysqlsite.settings"  # explicit: never whatever the test process's environment holds


def serve_mysql(
    mysql_dsn: str, tmp_path: Path, driver: str = "mysqlclient", *, forkhooks: bool, extra: tuple[str, ...] = ()
) -> Server:
    """uWSGI, master and 4 workers, on the MySQL site with `driver` and the `extra` ini lines."""
    lines = ["[uwsgi]", "master = true", "processes = 4", "enable-threads = true", *extra]
    lines += ["import = forkhooks.uwsgi"] if forkhooks else []
    lines += ["module = tests.project.mysqlsite.wsgi:application", "need-app = true"]
    lines += [f"http-socket = {tmp_path / 'app.sock'}", "die-on-term = true", "disable-logging = true"]
    config = tmp_path / "uwsgi.ini"
    config.write_text("\n".join(lines) + "\n")
    argv = [*UWSGI, "--ini", str(config), "--worker-reload-mercy", "10"]
    env = {"FORKHOOKS_MYSQL_DSN": mysql_dsn, "FORKHOOKS_MYSQL_DRIVER": driver, "DJANGO_SETTINGS_MODULE": MYSQL_SETTINGS}
    return start(argv, mysql_dsn, tmp_path, env=env)


def fifo(server: Server, command: bytes) -> None:
    """A command to uWSGI's master fifo (q: graceful stop, c: chain reload, r: graceful reload)."""
    (server.sock.parent / "master.fifo").write_bytes(command)


def wait_exit(server: Server, db: psycopg.Connection, timeout: float = 30) -> int:
    """Wait for the master to exit (bounded), then for every app backend to go; the master's exit code."""
    try:
        code = server.proc.wait(timeout)
    finally:
        server.kill()
    poll(lambda: app_backends(db) == 0, timeout=10, what="all app backends gone after shutdown")
    return code


def pids(log: str, pattern: str) -> set[int]:
    """Pids in the lines matching `pattern` (e.g. 'user atexit ran in (\\d+)'); forkhooks' own: logged_pids()."""
    return {int(m.group(1)) for m in re.finditer(pattern, log)}


def opened(log: str) -> set[int]:
    """Workers that logged opening their pool."""
    return logged_pids(log, "opened")


def closed(log: str) -> set[int]:
    """Workers that logged closing their connections and pool."""
    return logged_pids(log, "closed")


def all_idle(server: Server) -> None:
    """Every worker waits in its accept loop: none is still finishing a request.

    uWSGI skips uwsgi.atexit in a worker that a stop signal finds busy (uWSGI #2063), and a worker
    is still busy for a moment after the client has its last response.
    """

    def idle() -> bool:
        return all("epoll" in Path(f"/proc/{pid}/wchan").read_text() for pid in children(server.pid))

    poll(idle, timeout=10, what="every worker idle")


def clean(log: str) -> None:
    """No traceback and no failed forkhooks step in the server's log."""
    assert "Traceback" not in log, log[-4000:]
    assert "cannot join current thread" not in log, log[-4000:]
    assert "step(s) failed" not in log, log[-4000:]
    assert "NO MERCY" not in log, log[-4000:]  # every worker exited by itself, none was SIGKILLed at stop


def all_workers_up(server: Server, n: int = WORKERS) -> None:
    """Every worker has warmed its pool (so it got past the fork and the GIL)."""
    poll(lambda: len(opened(server.log())) >= n, timeout=15, what=f"{n} workers warmed")
