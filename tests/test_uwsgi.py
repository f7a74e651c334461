"""Real uWSGI (the pyuwsgi wheel), master + 4 workers, the example app, 1000 concurrent requests."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import psycopg
import pytest

from forkhooks.demo import loadgen
from forkhooks.demo.procnet import server_sockets

from .conftest import EXAMPLES, PYTHON, app_backends
from .record import record
from .servers import Server, poll, start

REQUESTS = 1000
UWSGI = [PYTHON, "-c", "import sys, pyuwsgi; sys.argv[0] = 'uwsgi'; sys.exit(pyuwsgi.run())"]
IMPORT = "import = forkhooks.uwsgi"
FORK_HOOKS = "py-call-uwsgi-fork-hooks = true"
# A uWSGI before 2.0.27 (threads can still be off), e.g. `pip install --target DIR pyuwsgi==2.0.26`.
OLD_PYUWSGI = os.environ.get("FORKHOOKS_OLD_PYUWSGI", "")


def ini(tmp_path: Path, name: str, *, drop: tuple[str, ...] = (), first: str = "", last: str = "") -> Path:
    """A copy of examples/`name` on the test's Unix socket, without the `drop` lines, plus extra lines."""
    lines = [line for line in (EXAMPLES / name).read_text().splitlines() if line.strip() not in drop]
    text = "\n".join(lines).replace("http-socket = 127.0.0.1:8000", f"http-socket = {tmp_path / 'app.sock'}")
    # Lines go right after [uwsgi] (before forkhooks' import) or at the end.
    text = text.replace("[uwsgi]\n", f"[uwsgi]\n{first}\n", 1) + f"\n{last}\n"
    path = tmp_path / "uwsgi.ini"
    path.write_text(text)
    return path


def serve(dsn: str, tmp_path: Path, config: Path, *args: str, env: dict[str, str] | None = None) -> Server:
    """Start uWSGI from examples/ and wait until it answers /health."""
    # A worker that hangs must not keep a test waiting for uWSGI's default 60 s of mercy; the
    # master fifo is how uWSGI 2.0 is stopped gracefully (see stop()).
    fifo = tmp_path / "master.fifo"
    argv = [*UWSGI, "--ini", str(config), "--worker-reload-mercy", "10", "--master-fifo", str(fifo), *args]
    return start(argv, dsn, tmp_path, env=env)


def stop(server: Server, db: psycopg.Connection) -> int:
    """Graceful shutdown, `q` on the master fifo: each worker finishes and runs uwsgi.atexit.

    SIGINT and SIGQUIT are uWSGI 2.0's brutal shutdown (a worker may die before its atexit
    runs: seen 1 run in 3 under load), and SIGTERM would reload.
    """
    if server.proc.poll() is None:
        (server.sock.parent / "master.fifo").write_bytes(b"q")
    code = server.stop(0, timeout=30)  # signal 0: just wait for the master to exit
    poll(lambda: app_backends(db) == 0, timeout=10, what="all app backends gone after shutdown")
    return code


def lines(log: str, pattern: str) -> list[str]:
    return [line for line in log.splitlines() if re.search(pattern, line)]


# (id, example ini, lines dropped from it, extra uWSGI arguments)
ENABLED = [
    ("example-ini", "uwsgi.ini", (), []),
    ("default", "uwsgi.ini", (FORK_HOOKS,), []),
    ("lazy-apps", "uwsgi-lazy-apps.ini", (), []),
    ("osafterfork", "uwsgi.ini", (FORK_HOOKS,), ["--py-call-osafterfork"]),
]


@pytest.mark.e2e
@pytest.mark.parametrize(("name", "example", "drop", "args"), ENABLED, ids=[c[0] for c in ENABLED])
def test_every_request_gets_its_own_rows(
    name: str, example: str, drop: tuple[str, ...], args: list[str], dsn: str, db: psycopg.Connection, tmp_path: Path
) -> None:
    """With forkhooks: 0 failed, 0 wrong rows, all 4 workers serve, each closes its pool on exit."""
    last = ""
    if name == "osafterfork":
        # forkhooks.install()'s at-fork callback also runs here: the discard must be idempotent.
        (tmp_path / "install_too.py").write_text("import forkhooks\n\nforkhooks.install()\n")
        last = f"import = {tmp_path / 'install_too.py'}"
    pure_default = FORK_HOOKS in drop
    try:
        server = serve(dsn, tmp_path, ini(tmp_path, example, drop=drop, last=last), *args)
    except RuntimeError:
        if pure_default:  # every worker hung at fork: uWSGI's hazard, not a wrong answer
            pytest.xfail("uWSGI never answered: its workers hung at fork without py-call-uwsgi-fork-hooks")
        raise
    try:
        results = loadgen.run(server.target, REQUESTS, concurrency=64)
        master = server_sockets(server.pid)
        hung = 4 - len(lines(server.log(), r"forkhooks: worker \d+ opened"))
        if pure_default and hung:
            # A worker that hung at fork never exits gracefully either: don't wait for it.
            server.kill()
    finally:
        code = stop(server, db)
    log = server.log()
    record("uwsgi", name, results, master_sockets=master)
    assert results.requests == REQUESTS
    assert results.wrong == 0, results.summary()  # never another request's rows, whatever else happens
    if pure_default:
        # uWSGI forks from C without the GIL while the master's pool threads run: forkhooks says so
        # (with --py-call-osafterfork the stale threads are already forgotten when it looks).
        warned = len(lines(log, "WARNING forkhooks: uWSGI forked this process while"))
        if name == "default":  # at least one worker says so (the others may have been forked between)
            assert warned >= 1, log[-3000:]
        else:
            assert warned == 0, log[-3000:]
        if hung:
            pytest.xfail(f"{hung} worker(s) hung at fork: uWSGI's own hazard without py-call-uwsgi-fork-hooks")
    else:
        assert "forked this process while" not in log
    assert results.failed == 0, results.summary()
    assert len(results.pids) == 4, results.summary()
    assert code == 0, log[-3000:]
    assert len(lines(log, r"forkhooks: worker \d+ closed")) == 4, log[-3000:]
    assert "without Python threads" not in log  # uWSGI >= 2.0.27 always runs them
    if name == "example-ini":
        assert master == 0, "py-call-uwsgi-fork-hooks: the master closes before forking"
        assert len(lines(log, r"forkhooks: master \d+ closed 1 connection and 1 pool")) == 1, log[-3000:]
    if pure_default:
        # With --py-call-osafterfork, install()'s at-fork callback ("forked child") discards first.
        assert len(lines(log, r"forkhooks: (worker|forked child) \d+ discarded [1-9]")) == 4, log[-3000:]
    if name == "osafterfork":
        assert len(lines(log, "already done in this process")) == 4, log[-3000:]


@pytest.mark.e2e
def test_control_without_forkhooks_fails(dsn: str, db: psycopg.Connection, tmp_path: Path) -> None:
    """uWSGI prefork (the example ini) without forkhooks: shared sockets fail requests or leak rows."""
    # py-call-uwsgi-fork-hooks stays: without it a worker can hang at fork (uWSGI's GIL hazard, see
    # above) and the control would measure that instead of the shared sockets.
    server = serve(dsn, tmp_path, ini(tmp_path, "uwsgi.ini", drop=(IMPORT,)))
    try:
        master = server_sockets(server.pid)
        results = loadgen.run(server.target, REQUESTS, concurrency=64, timeout=12)
    finally:
        server.kill()
    record("uwsgi-control", "default", results, master_sockets=master)
    assert master > 0, "the master keeps its start-up connection and pool"
    assert results.failed + results.wrong > 0, results.summary()


USER_HOOKS = """\
import os
import uwsgi
from uwsgidecorators import postfork


@postfork
def mine():
    uwsgi.log(f"user postfork ran in {os.getpid()}")
"""

BY_HAND = """\
import os
import uwsgi


def mine():
    uwsgi.log(f"user postfork ran in {os.getpid()}")


def goodbye():
    uwsgi.log(f"user atexit ran in {os.getpid()}")


uwsgi.post_fork_hook = mine
uwsgi.atexit = goodbye
"""

USERS = [("decorator-before", USER_HOOKS, True), ("decorator-after", USER_HOOKS, False), ("by-hand", BY_HAND, True)]


@pytest.mark.e2e
@pytest.mark.parametrize(("name", "code", "before"), USERS, ids=[u[0] for u in USERS])
def test_user_hooks_still_run(
    name: str, code: str, before: bool, dsn: str, db: psycopg.Connection, tmp_path: Path
) -> None:
    """@postfork, or hooks set by hand, run in every worker, after forkhooks' discard; both atexits run."""
    hooks = tmp_path / "user_hooks.py"
    hooks.write_text(code)
    line = f"import = {hooks}"
    config = ini(tmp_path, "uwsgi.ini", first=line if before else "", last="" if before else line)
    server = serve(dsn, tmp_path, config)
    try:
        results = loadgen.run(server.target, 200, concurrency=16)
    finally:
        code_ = stop(server, db)
    log = server.log().splitlines()
    assert (results.failed, results.wrong) == (0, 0), results.summary()
    assert code_ == 0
    users = {int(m.group(1)): i for i, line in enumerate(log) if (m := re.search(r"user postfork ran in (\d+)", line))}
    ours = {int(m.group(1)): i for i, line in enumerate(log) if (m := re.search(r"worker (\d+) discarded", line))}
    assert len(users) == 4 and users.keys() == ours.keys(), "\n".join(log[-60:])
    assert all(ours[pid] < users[pid] for pid in users), "forkhooks' discard runs first"
    if name == "by-hand":
        assert len([line for line in log if "user atexit ran" in line]) == 4
    assert len([line for line in log if re.search(r"forkhooks: worker \d+ closed", line)]) == 4


@pytest.mark.e2e
def test_threads_off_warns(dsn: str, db: psycopg.Connection, tmp_path: Path) -> None:
    """A uWSGI that runs without Python threads (before 2.0.27, no enable-threads) gets a warning naming the option."""
    if not OLD_PYUWSGI:
        pytest.skip("uWSGI >= 2.0.27 always enables threads; set FORKHOOKS_OLD_PYUWSGI to a pyuwsgi<2.0.27 dir")
    config = ini(tmp_path, "uwsgi.ini", drop=("enable-threads = true",))
    server = serve(dsn, tmp_path, config, env=_old_pyuwsgi())  # /health needs no database
    try:
        # What the warning is about: workers whose pool threads cannot run hang on the database.
        results = loadgen.run(server.target, 200, concurrency=16, timeout=5)
    finally:
        server.kill()
    log = server.log()
    record("uwsgi", "threads-off-2.0.26", results)
    assert "Python threads support is disabled" in log  # uWSGI's own line: threads really are off
    assert len(lines(log, r"WARNING forkhooks: uWSGI runs without Python threads.*enable-threads = true")) == 1
    assert results.wrong == 0, results.summary()


def _old_pyuwsgi() -> dict[str, str]:
    return {"PYTHONPATH": os.pathsep.join([OLD_PYUWSGI, str(EXAMPLES), str(EXAMPLES.parent)])}


def test_import_outside_uwsgi_says_so() -> None:
    """Outside uWSGI: one clear ImportError, not a traceback from uWSGI internals."""
    assert "uwsgi" not in sys.modules
    with pytest.raises(ImportError, match="only works inside a uWSGI process") as caught:
        import forkhooks.uwsgi  # noqa: F401
    assert caught.value.__cause__ is None and caught.value.__suppress_context__
    assert "forkhooks.uwsgi" not in sys.modules
