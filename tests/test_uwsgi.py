"""Real uWSGI (the pyuwsgi wheel), master + 4 workers, the example app: no worker hangs at fork, every stop closes."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from forkhooks.demo import loadgen
from forkhooks.demo.process import children
from forkhooks.demo.procnet import server_sockets

from .harness import EXAMPLES, PYTHON, app_backends, forkhooks_lines, logged_pids, sleeping
from .plugins.servers import Servers
from .record import record
from .servers import Server, poll
from .uwsgiservers import (
    UWSGI,
    WORKERS,
    all_idle,
    all_workers_up,
    clean,
    closed,
    fifo,
    ini,
    opened,
    pids,
    wait_exit,
)

REQUESTS = 100  # enough for every worker to serve; the point is hangs and closes, not load
STARTS = 20
IMPORT = "import = forkhooks.uwsgi"
# A uWSGI before 2.0.27 (threads can still be off), e.g. `pip install --target DIR pyuwsgi==2.0.26`.
OLD_PYUWSGI = os.environ.get("FORKHOOKS_OLD_PYUWSGI", "")


def hung(server: Server, served: set[int]) -> list[int]:
    """Children that never served and wait on a futex: stuck on the GIL a thread of the master held at fork."""
    stuck = []
    for pid in children(server.pid):
        try:
            wchan = Path(f"/proc/{pid}/wchan").read_text()
        except OSError:
            continue
        if pid not in served and "futex" in wchan:
            stuck.append(pid)
    return stuck


Start = Callable[..., Server]  # the uwsgi_server fixture: uwsgi_server(config, *args, tmp=..., env=...)

# The hang is likeliest with many forks while the master's pool still opens connections in its threads:
# 8 workers, and a pool of min_size 8 that the start-up query opens. Both tests below use it.
BUSY = 8
BUSY_ARGS = ("--processes", str(BUSY))
BUSY_ENV = {"FORKHOOKS_EXAMPLE_POOL_OPTIONS": f'{{"min_size": {BUSY}}}', "FORKHOOKS_EXAMPLE_POOL_MAX": str(BUSY)}


@pytest.mark.e2e
def test_default_prefork_never_hangs(uwsgi_server: Start, db: psycopg.Connection, tmp_path: Path) -> None:
    """20 starts with just `import = forkhooks.uwsgi`: 0 hung workers, 0 failed or wrong, the master holds nothing."""
    hung_total = failed = wrong = 0
    for i in range(STARTS):
        run = tmp_path / str(i)
        run.mkdir()
        server = uwsgi_server(ini(run), *BUSY_ARGS, env=BUSY_ENV, tmp=run)
        with contextlib.suppress(TimeoutError):  # a hung worker never warms: the assertions below say so
            all_workers_up(server, BUSY)
        master = server_sockets(server.pid)
        results = loadgen.run(server.target, REQUESTS, concurrency=16, timeout=10)
        stuck = hung(server, results.pids)
        during = app_backends(db)
        fifo(server, b"q")
        code = wait_exit(server, db)
        log = server.log()
        hung_total += len(stuck)
        failed += results.failed
        wrong += results.wrong
        assert stuck == [], f"start {i}: {len(stuck)} worker(s) hung at fork\n{log[-3000:]}"
        assert master == 0, f"start {i}: the master kept {master} connection(s)"
        assert len(logged_pids(log, "closed 1 connection and 1 pool", who="master")) == 1, log[-3000:]
        assert len(opened(log)) == BUSY and during >= BUSY, (results.summary(), during)
        assert opened(log) == closed(log), log[-3000:]
        assert code == 0, log[-3000:]
        clean(log)
    record("uwsgi", f"default x{STARTS}", results, hung_workers=hung_total, failed_all=failed, wrong_all=wrong)
    assert (failed, wrong) == (0, 0)


@pytest.mark.e2e
def test_control_without_forkhooks_hangs(servers: Servers, dsn: str, db: psycopg.Connection, tmp_path: Path) -> None:
    """Without forkhooks the same config leaves workers hung at fork: stop at the first start that shows it."""
    fifo_arg = ("--master-fifo", "{sock}.fifo", "--disable-logging")
    for i in range(STARTS):
        run = tmp_path / str(i)
        run.mkdir()
        config = ini(run, drop=(IMPORT,))
        server = servers.add(Server([*UWSGI, "--ini", str(config), *fifo_arg, *BUSY_ARGS], dsn, run, env=BUSY_ENV))
        try:
            server.wait_ready(timeout=15)  # a healthy start answers in about a second
        except RuntimeError:  # every worker hung: nothing ever answers
            record("uwsgi-control", "default", loadgen.Results(), hung_workers=BUSY, starts=i + 1)
            return
        master = server_sockets(server.pid)
        results = loadgen.run(server.target, REQUESTS, concurrency=16, timeout=3)
        stuck = hung(server, results.pids)
        server.kill()  # before the next start: a hung server would hold its 8 workers
        if stuck:
            record("uwsgi-control", "default", results, hung_workers=len(stuck), starts=i + 1, master_sockets=master)
            assert master > 0, "without forkhooks the master keeps its start-up connection and pool"
            return
    pytest.fail(f"no worker hung in {STARTS} starts without forkhooks: the control shows nothing")


# (id, how the whole process group or the master is told to stop)
STOPS = [
    ("group-SIGTERM", lambda s: os.killpg(s.pid, signal.SIGTERM)),  # systemd's KillMode=control-group; die-on-term
    ("group-SIGINT", lambda s: os.killpg(s.pid, signal.SIGINT)),  # Ctrl-C in a terminal
    ("master-SIGINT", lambda s: os.kill(s.pid, signal.SIGINT)),
    ("fifo-q", lambda s: fifo(s, b"q")),
]


@pytest.mark.e2e
@pytest.mark.parametrize(("name", "stop"), STOPS, ids=[s[0] for s in STOPS])
def test_every_worker_closes_on_stop(
    name: str, stop, uwsgi_server: Start, db: psycopg.Connection, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    """Each way of stopping: every worker closes its pool, logs it, and no backend outlives uWSGI."""
    server = uwsgi_server(ini(tmp_path))
    all_workers_up(server)
    results = loadgen.run(server.target, REQUESTS, concurrency=16)
    during = app_backends(db)
    all_idle(server)
    stop(server)
    code = wait_exit(server, db)
    log = server.log()
    record("uwsgi-stop", name, results, closed=len(closed(log)), backends_during=during)
    assert (results.failed, results.wrong) == (0, 0), results.summary()
    assert during >= WORKERS * 2
    assert opened(log) == closed(log) and len(closed(log)) == WORKERS, log[-3000:]
    assert code == 0, log[-3000:]
    clean(log)


MODULE = "module = tests.testsite.wsgi:application"
WSGI_FILE = EXAMPLES.parent / "tests" / "testsite" / "wsgi.py"
INSTALL_TOO = "import forkhooks\n\nforkhooks.install()\n"
# An app factory uWSGI calls after importing its module (`module:make()`): the app loads, and queries, then.
FACTORY = "def make():\n    from tests.testsite.wsgi import application\n\n    return application\n"

# (id, example, lines dropped, extra ini lines, extra arguments, requests)
MODES = [
    ("threads", "uwsgi.ini", (), "threads = 4", (), REQUESTS),
    # Slow requests keep the first worker busy: the master spawns more while it runs.
    ("cheaper", "uwsgi.ini", (), "cheaper = 1\ncheaper-initial = 1\ncheaper-step = 1\ncheaper-overload = 1", (), 16),
    ("lazy-apps", "uwsgi-lazy-apps.ini", (), "", (), REQUESTS),
    ("max-requests", "uwsgi.ini", (), "max-requests = 20\nmin-worker-lifetime = 0", (), REQUESTS),
    ("wsgi-file", "uwsgi.ini", (MODULE,), f"wsgi-file = {WSGI_FILE}", (), REQUESTS),
    ("mount", "uwsgi.ini", (MODULE,), "mount = /=tests.testsite.wsgi:application", (), REQUESTS),
    ("factory", "uwsgi.ini", (MODULE,), "pythonpath = {tmp}\nmodule = factory_app:make()", (), REQUESTS),
    ("py-call-uwsgi-fork-hooks", "uwsgi.ini", (), "py-call-uwsgi-fork-hooks = true", (), REQUESTS),
    # forkhooks.install()'s at-fork callback runs too: the second discard must be a no-op.
    ("osafterfork+install", "uwsgi.ini", (), "import = {tmp}/install_too.py", ("--py-call-osafterfork",), REQUESTS),
]


@pytest.mark.e2e
@pytest.mark.parametrize(("name", "example", "drop", "extra", "args", "n"), MODES, ids=[m[0] for m in MODES])
def test_modes_serve_and_close(
    name: str,
    example: str,
    drop: tuple[str, ...],
    extra: str,
    args: tuple[str, ...],
    n: int,
    uwsgi_server: Start,
    db: psycopg.Connection,
    tmp_path: Path,
) -> None:
    """Every mode: 0 hung, 0 failed, 0 wrong, the master holds nothing, every worker that opened a pool closed it."""
    if "--py-call-osafterfork" in args and sys.version_info >= (3, 12):
        pytest.skip("uWSGI 2.0 aborts every worker under --py-call-osafterfork on Python >= 3.12 (uWSGI #2710)")
    (tmp_path / "install_too.py").write_text(INSTALL_TOO)
    (tmp_path / "factory_app.py").write_text(FACTORY)
    extra = extra.replace("{tmp}", str(tmp_path))
    server = uwsgi_server(ini(tmp_path, example, drop=drop, last=extra), *args)
    # Every worker up first: a stop that reaches a lazy-apps worker still loading its app is lost (uWSGI
    # sets a worker's signal handlers after the app loaded) and the master then waits for it.
    all_workers_up(server, 1 if name == "cheaper" else WORKERS)
    master = server_sockets(server.pid)
    path = "/slow/0.5" if name == "cheaper" else "/echo"
    results = loadgen.run(server.target, n, concurrency=8 if name == "cheaper" else 16, path=path)
    during = app_backends(db)
    stuck = hung(server, results.pids)
    # A worker recycled at the end of the load may still be starting: a stop that reaches it before
    # uWSGI set its signal handlers is lost, and the master waits for it. Idle workers have them.
    if name == "max-requests" and not stuck:
        all_idle(server)
    fifo(server, b"q")
    code = wait_exit(server, db)
    log = server.log()
    record("uwsgi", name, results, master_sockets=master, workers_closed=len(closed(log)), backends_during=during)
    assert (results.failed, results.wrong) == (0, 0), results.summary()
    assert stuck == [] and master == 0 and during > 0
    assert opened(log) == closed(log), log[-3000:]
    if name == "max-requests":  # workers recycled after 20 requests: those closed too, not only the last 4
        assert len(closed(log)) > WORKERS, log[-3000:]
    elif name == "cheaper":  # the master spawned workers under load, from a master with no threads
        assert len(closed(log)) >= 2, log[-3000:]
    else:
        assert len(closed(log)) == WORKERS, log[-3000:]
    if name != "lazy-apps":  # the master loaded the app, then closed what it opened, once
        assert len(logged_pids(log, "closed 1 connection and 1 pool", who="master")) == 1, log[-3000:]
    if name == "osafterfork+install":
        assert log.count("already done in this process") == WORKERS, log[-3000:]
    assert code == 0, log[-3000:]
    clean(log)


LATE_ATEXIT = """\
import os
import uwsgi


def goodbye():
    uwsgi.log(f"user atexit ran in {os.getpid()}")


uwsgi.atexit = goodbye
"""


@pytest.mark.e2e
def test_lazy_apps_app_replacing_atexit(uwsgi_server: Start, db: psycopg.Connection, tmp_path: Path) -> None:
    """lazy-apps, an app that assigns uwsgi.atexit after forkhooks was imported: both run in every worker."""
    (tmp_path / "late_atexit.py").write_text(LATE_ATEXIT)
    config = ini(tmp_path, "uwsgi-lazy-apps.ini", last=f"import = {tmp_path / 'late_atexit.py'}")
    server = uwsgi_server(config)
    all_workers_up(server)  # warmed after the app loaded
    results = loadgen.run(server.target, REQUESTS, concurrency=16)
    fifo(server, b"q")
    code = wait_exit(server, db)
    log = server.log()
    assert (results.failed, results.wrong) == (0, 0), results.summary()
    assert len(pids(log, r"user atexit ran in (\d+)")) == WORKERS, log[-3000:]
    assert opened(log) == closed(log) and len(closed(log)) == WORKERS, log[-3000:]
    assert code == 0
    clean(log)


SPOOL = """\
import uwsgi
from uwsgidecorators import postfork, spool


@spool
def count(arguments):
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT 41 + 1")
        uwsgi.log(f"spooled task got {cursor.fetchone()[0]}")


@postfork
def queue_one():
    if uwsgi.worker_id() == 1:  # a worker queues a task, as an app would
        count.spool()
"""


@pytest.mark.e2e
def test_spooler_and_mule_start_after_the_master_closed(
    uwsgi_server: Start, db: psycopg.Connection, tmp_path: Path
) -> None:
    """A spooler and a mule fork from a master with no pool thread left: nothing hangs, the spooler queries."""
    (tmp_path / "spool").mkdir()
    (tmp_path / "tasks.py").write_text(SPOOL)
    extra = f"spooler = {tmp_path / 'spool'}\nspooler-frequency = 1\nmule = 1\nimport = {tmp_path / 'tasks.py'}"
    server = uwsgi_server(ini(tmp_path, last=extra))
    master = server_sockets(server.pid)
    results = loadgen.run(server.target, REQUESTS, concurrency=16)
    stuck = hung(server, results.pids)
    poll(lambda: "spooled task got 42" in server.log(), timeout=15, what="the spooled task")
    fifo(server, b"q")
    code = wait_exit(server, db)
    log = server.log()
    assert (results.failed, results.wrong) == (0, 0), results.summary()
    assert stuck == [] and master == 0, (stuck, master)
    assert opened(log) == closed(log) and len(closed(log)) == WORKERS, log[-3000:]
    assert code == 0
    clean(log)


@pytest.mark.e2e
def test_reload_in_a_virtualenv(uwsgi_server: Start, db: psycopg.Connection, tmp_path: Path) -> None:
    """SIGHUP reload (with --binary-path, as pyuwsgi in a virtualenv needs), then a chain reload: every old worker
    closes, the re-executed master closes again, the new workers serve."""
    server = uwsgi_server(ini(tmp_path), "--binary-path", PYTHON)
    all_workers_up(server)
    first = opened(server.log())
    os.kill(server.pid, signal.SIGHUP)
    all_workers_up(server, 2 * WORKERS)
    assert closed(server.log()) >= first
    results = loadgen.run(server.target, REQUESTS, concurrency=16)
    fifo(server, b"c")  # chain reload: one worker at a time
    all_workers_up(server, 3 * WORKERS)
    master = server_sockets(server.pid)
    fifo(server, b"q")
    code = wait_exit(server, db)
    log = server.log()
    record("uwsgi", "reload+chain", results, workers_closed=len(closed(log)), master_sockets=master)
    assert (results.failed, results.wrong) == (0, 0), results.summary()
    assert len(logged_pids(log, "closed 1 connection and 1 pool", who="master")) == 1  # same pid: re-executed
    assert log.count("forkhooks: master") >= 2 and master == 0
    assert opened(log) == closed(log) and len(closed(log)) == 3 * WORKERS, log[-3000:]
    assert code == 0
    clean(log)


# PostgreSQL notices a vanished client during a query only when asked to (PostgreSQL >= 14, Linux).
CHECK_CLIENT = "-c client_connection_check_interval=500"


@pytest.mark.e2e
@pytest.mark.parametrize("check", [True, False], ids=["client-check", "control"])
def test_harakiri_leaves_no_query_behind(
    check: bool, uwsgi_server: Start, dsn: str, db: psycopg.Connection, tmp_path: Path
) -> None:
    """harakiri SIGKILLs a worker mid-query (no Python runs, uWSGI #2063): with client_connection_check_interval the
    server ends the orphaned query at once, and the respawned worker serves; without it the query runs on."""
    env = {"FORKHOOKS_DSN": make_conninfo(dsn, options=CHECK_CLIENT)} if check else None
    server = uwsgi_server(ini(tmp_path, last="harakiri = 2"), env=env)
    all_workers_up(server)
    status, _ = _slow(server, 6)
    poll(lambda: "HARAKIRI ON WORKER" in server.log(), timeout=10, what="harakiri")
    if check:
        poll(lambda: sleeping(db) == 0, timeout=3, what="the orphaned query ended")
        all_workers_up(server, WORKERS + 1)  # the respawned worker
        results = loadgen.run(server.target, REQUESTS, concurrency=16)
        fifo(server, b"q")
        code = wait_exit(server, db)
    else:
        still = sleeping(db)
    server.kill()  # the control's query outlives its worker, not the server
    log = server.log()
    assert status != 200
    if not check:
        assert still == 1, "the killed worker's query runs on"
        poll(lambda: app_backends(db) == 0, timeout=15, what="backends gone")
        return
    assert (results.failed, results.wrong) == (0, 0), results.summary()
    assert len(opened(log) - closed(log)) == 1, log[-3000:]  # the SIGKILLed worker could not close
    assert code == 0
    clean(log)


# SIGPWR: a signal uWSGI leaves alone in workers, so forkhooks can handle it.
GRACEFUL_HARAKIRI = f"harakiri = 2\nharakiri-graceful-timeout = 5\nharakiri-graceful-signal = {int(signal.SIGPWR)}"


@pytest.mark.e2e
def test_graceful_harakiri_cancels_the_stuck_query(uwsgi_server: Start, db: psycopg.Connection, tmp_path: Path) -> None:
    """harakiri-graceful-signal set to one uWSGI leaves alone: forkhooks cancels the stuck request's query, the
    request fails at once, the worker lives on (no SIGKILL) and closes its pool at stop."""
    server = uwsgi_server(ini(tmp_path, last=GRACEFUL_HARAKIRI))
    all_workers_up(server)
    status, _ = _slow(server, 30)  # returns when the query is cancelled, long before 30 s
    poll(lambda: sleeping(db) == 0, timeout=3, what="the stuck query cancelled")
    results = loadgen.run(server.target, REQUESTS, concurrency=16)
    fifo(server, b"q")
    code = wait_exit(server, db)
    log = server.log()
    assert status == 500  # the request failed on its cancelled query instead of hanging to the SIGKILL
    assert "HARAKIRI ON WORKER" in log and "cancelled 1 running query(ies)" in log, log[-3000:]
    assert "died" not in log and "NO MERCY" not in log, log[-3000:]  # no worker was killed
    assert (results.failed, results.wrong) == (0, 0), results.summary()
    assert opened(log) == closed(log) and len(closed(log)) == WORKERS, log[-3000:]
    assert code == 0


def _slow(server: Server, seconds: int) -> tuple[int, bytes]:
    try:
        return loadgen.get(server.target, f"/slow/{seconds}", timeout=seconds + 5)
    except Exception:  # the worker died under the request
        return 0, b""


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
    name: str, code: str, before: bool, uwsgi_server: Start, db: psycopg.Connection, tmp_path: Path
) -> None:
    """@postfork, or hooks set by hand, run in every worker, after forkhooks' discard; both atexits run."""
    hooks = tmp_path / "user_hooks.py"
    hooks.write_text(code)
    line = f"import = {hooks}"
    server = uwsgi_server(ini(tmp_path, first=line if before else "", last="" if before else line))
    results = loadgen.run(server.target, REQUESTS, concurrency=16)
    fifo(server, b"q")
    code_ = wait_exit(server, db)
    log = server.log().splitlines()
    assert (results.failed, results.wrong) == (0, 0), results.summary()
    assert code_ == 0
    users = {int(m.group(1)): i for i, line in enumerate(log) if (m := re.search(r"user postfork ran in (\d+)", line))}
    ours = {line.pid: line.n for line in forkhooks_lines("\n".join(log), "worker", "discarded")}
    assert len(users) == WORKERS and users.keys() == ours.keys(), "\n".join(log[-60:])
    assert all(ours[pid] < users[pid] for pid in users), "forkhooks' discard runs first"
    if name == "by-hand":
        assert len([line for line in log if "user atexit ran" in line]) == WORKERS
    assert len(closed("\n".join(log))) == WORKERS
    clean("\n".join(log))


@pytest.mark.e2e
def test_threads_off_warns(uwsgi_server: Start, db: psycopg.Connection, tmp_path: Path) -> None:
    """A uWSGI that runs without Python threads (before 2.0.27, no enable-threads) gets a warning naming the option."""
    if not OLD_PYUWSGI:
        pytest.skip("uWSGI >= 2.0.27 always enables threads; set FORKHOOKS_OLD_PYUWSGI to a pyuwsgi<2.0.27 dir")
    config = ini(tmp_path, drop=("enable-threads = true",))
    env = {"PYTHONPATH": os.pathsep.join([OLD_PYUWSGI, str(EXAMPLES), str(EXAMPLES.parent)])}
    server = uwsgi_server(config, env=env)  # /health needs no database
    results = loadgen.run(server.target, 200, concurrency=16, timeout=5)
    server.kill()
    log = server.log()
    record("uwsgi", "threads-off-2.0.26", results)
    assert "Python threads support is disabled" in log  # uWSGI's own line: threads really are off
    assert len(re.findall(r"WARNING forkhooks: uWSGI runs without Python threads.*enable-threads = true", log)) == 1
    assert results.wrong == 0, results.summary()


def test_import_outside_uwsgi_says_so() -> None:
    """Outside uWSGI: one clear ImportError, not a traceback from uWSGI internals."""
    assert "uwsgi" not in sys.modules
    with pytest.raises(ImportError, match="only works inside a uWSGI process") as caught:
        import forkhooks.uwsgi  # noqa: F401
    assert caught.value.__cause__ is None and caught.value.__suppress_context__
    assert "forkhooks.uwsgi" not in sys.modules


UNBLOCK = """\
import contextlib

import forkhooks._adapters.stopsignals as stopsignals

stopsignals.blocked = contextlib.nullcontext  # pool threads take stop signals again
"""


@pytest.mark.e2e
def test_control_pool_threads_taking_stop_signals(uwsgi_server: Start, db: psycopg.Connection, tmp_path: Path) -> None:
    """Undo forkhooks' signal blocking: a group SIGTERM lands on pool threads; workers skip the close or hang."""
    for i in range(10):
        run = tmp_path / str(i)
        run.mkdir()
        (run / "unblock.py").write_text(UNBLOCK)
        # A worker stuck in exit is SIGKILLed after the mercy: 3 s, not 10, for the control.
        server = uwsgi_server(ini(run, last=f"import = {run / 'unblock.py'}"), "--worker-reload-mercy", "3", tmp=run)
        all_workers_up(server)
        results = loadgen.run(server.target, REQUESTS, concurrency=16)
        all_idle(server)  # as in the stop tests: only the pool threads differ
        os.killpg(server.pid, signal.SIGTERM)
        with contextlib.suppress(TimeoutError, subprocess.TimeoutExpired):
            server.proc.wait(30)
        server.kill()  # then the backends must go (the control's stuck workers with it)
        poll(lambda: app_backends(db) == 0, timeout=15, what="backends gone")
        log = server.log()
        unclosed = len(opened(log) - closed(log))
        killed = log.count("NO MERCY")  # stuck in exit() on a pool thread until the master SIGKILLed it
        if unclosed or killed or "Traceback" in log:
            record(
                "uwsgi-control",
                "group-SIGTERM unblocked",
                results,
                starts=i + 1,
                unclosed=unclosed,
                killed=killed,
                tracebacks=log.count("Traceback"),
            )
            return
    pytest.fail("every worker closed in 10 starts with pool threads taking stop signals: the control shows nothing")
