"""MySQL/MariaDB behind real gunicorn: 4 preloaded workers, CONN_MAX_AGE=None, a start-up query."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from forkhooks.demo import loadgen

from . import mariadb
from .harness import ROOT
from .jobrunners import comes_true
from .record import record
from .servers import Server, gunicorn, load, poll, start, wait_workers

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

REQUESTS = 300
SETTINGS = "tests.project.mysqlsite.settings"  # explicit: never whatever the test process's environment holds
WSGI = "tests.project.mysqlsite.wsgi:application"
DRIVERS = ["mysqlclient", "pymysql"]


def serve(mysql_dsn: str, tmp_path: Path, driver: str, *args: str) -> Server:
    """gunicorn --preload -w 4 on the MySQL site, with `driver`."""
    env = {"FORKHOOKS_MYSQL_DSN": mysql_dsn, "FORKHOOKS_MYSQL_DRIVER": driver, "DJANGO_SETTINGS_MODULE": SETTINGS}
    return start(gunicorn(*args, WSGI), mysql_dsn, tmp_path, env=env)


def problems(log: str) -> list[str]:
    """Lines of a server log that show a failure: an ERROR or a traceback."""
    return [line for line in log.splitlines() if "ERROR" in line or "Traceback" in line]


@pytest.mark.parametrize("driver", DRIVERS)
def test_sync_workers_get_their_own_rows(driver: str, mysql_dsn: str, tmp_path: Path) -> None:
    """With forkhooks: 0 failed, 0 wrong, 4 workers serve, no error logged, nothing left on the server."""
    server = serve(mysql_dsn, tmp_path, driver, "-c", "python:forkhooks.gunicorn", "-k", "sync")
    wait_workers(server)  # all 4 up before the load: a late one would serve nothing
    run = load(server, REQUESTS)
    record("mysql-gunicorn", f"sync-{driver}", run.results)
    assert (run.results.failed, run.results.wrong) == (0, 0), run.results.summary()
    assert len(run.results.pids) == 4, run.results.summary()
    assert run.code == 0, server.log()[-3000:]
    assert problems(server.log()) == [], server.log()[-3000:]
    poll(lambda: mariadb.sessions(mysql_dsn) == [], timeout=5, what="every app session gone after the stop")


@pytest.mark.parametrize("driver", DRIVERS)
def test_control_sync_workers_share_the_masters_session(driver: str, mysql_dsn: str, tmp_path: Path) -> None:
    """Without forkhooks the workers answer on the master's start-up session: rows go to the wrong request."""
    run = load(serve(mysql_dsn, tmp_path, driver, "-k", "sync"), REQUESTS, control=True)
    record("mysql-gunicorn-control", f"sync-{driver}", run.results)
    assert run.results.failed + run.results.wrong > 0, run.results.summary()


def gthread_aborted(mysql_dsn: str, tmp_path: Path, driver: str, conf: str, case: str) -> tuple[int, str]:
    """Serve REQUESTS on gthread workers (4 threads) with `conf`, stop; the server's new Aborted_clients."""
    # An earlier test's killed server may still have sessions the server has yet to count as aborted.
    poll(lambda: mariadb.sessions(mysql_dsn) == [], timeout=10, what="no session left by an earlier test")
    before = mariadb.aborted_clients(mysql_dsn)
    server = serve(mysql_dsn, tmp_path, driver, "-c", conf, "-k", "gthread", "--threads", "4")
    run = load(server, REQUESTS)
    assert (run.results.failed, run.results.wrong) == (0, 0), run.results.summary()
    assert run.code == 0, server.log()[-3000:]
    # Aborted_clients counts once the server notices the dropped socket: wait for the sessions to go.
    poll(lambda: mariadb.sessions(mysql_dsn) == [], timeout=10, what="every app session gone after the stop")
    aborted = mariadb.aborted_clients(mysql_dsn) - before
    record("mysql-gunicorn-gthread", f"{case}-{driver}", run.results, aborted=aborted)
    return aborted, server.log()


@pytest.mark.parametrize("driver", DRIVERS)
def test_gthread_stop_closes_every_threads_connection(driver: str, mysql_dsn: str, tmp_path: Path) -> None:
    """At a gthread worker's exit every request thread's connection is closed: no aborted connection."""
    aborted, log = gthread_aborted(mysql_dsn, tmp_path, driver, "python:forkhooks.gunicorn", "forkhooks")
    assert aborted == 0, log[-3000:]
    assert problems(log) == [], log[-3000:]


def test_control_gthread_close_of_one_thread_aborts_the_others(mysql_dsn: str, tmp_path: Path) -> None:
    """Control: a close that sees only its own thread leaves the request threads' connections to die.

    PyMySQL: its connection has no finalizer that says goodbye, so each one the close missed is
    an aborted connection. (mysqlclient's finalizer sends COM_QUIT when a thread's wrapper is
    freed at a graceful exit, so there the control shows none.)
    """
    conf = str(ROOT / "tests/project/gunicorn_this_thread_only.py")
    aborted, log = gthread_aborted(mysql_dsn, tmp_path, "pymysql", conf, "this-thread-only")
    assert aborted > 0, log[-3000:]


def sleeping_queries(mysql_dsn: str) -> int:
    """Queries on the server that are in the view's SLEEP(30)."""
    with mariadb.connect(mysql_dsn) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM information_schema.processlist WHERE info LIKE 'SELECT SLEEP(30%%'")
        return int(cur.fetchone()[0])


def abort_mid_query(mysql_dsn: str, tmp_path: Path, *args: str) -> tuple[Server, bool]:
    """A request in SELECT SLEEP(30) on PyMySQL outlives gunicorn's 2 s worker timeout (SIGABRT).

    Returns the server and whether the query was still running on the server 3 s after the abort.
    """
    server = serve(mysql_dsn, tmp_path, "pymysql", *args, "-k", "sync", "--timeout", "2")
    request = threading.Thread(target=lambda: loadgen.get(server.target, "/sleep?seconds=30", timeout=40))
    try:
        request.daemon = True  # its answer never comes: the worker is aborted under it
        request.start()
        poll(lambda: sleeping_queries(mysql_dsn) == 1, timeout=10, what="the view's SLEEP(30) running")
        poll(lambda: "WORKER TIMEOUT" in server.log(), timeout=20, what="gunicorn's worker timeout")
        still = comes_true(lambda: sleeping_queries(mysql_dsn) == 0, timeout=3) is False
    finally:
        server.kill()
        with mariadb.connect(mysql_dsn) as conn, conn.cursor() as cur:  # a control leaves it running: end it
            cur.execute("SELECT id FROM information_schema.processlist WHERE info LIKE 'SELECT SLEEP(30%%'")
            for (session,) in cur.fetchall():
                cur.execute(f"KILL {int(session)}")
    return server, still


def test_worker_timeout_kills_the_running_query(mysql_dsn: str, tmp_path: Path) -> None:
    """PyMySQL reads in Python, so worker_abort runs mid-query: KILL QUERY ends it at once, forkhooks logs no error.

    (gunicorn itself logs the aborted request's SystemExit, with or without forkhooks.)
    """
    server, still = abort_mid_query(mysql_dsn, tmp_path, "-c", "python:forkhooks.gunicorn")
    assert not still, server.log()[-3000:]
    assert [line for line in server.log().splitlines() if "ERROR] forkhooks" in line] == [], server.log()[-3000:]
    assert "was in a query: cancelled" in server.log()


def test_control_worker_timeout_leaves_the_query_running(mysql_dsn: str, tmp_path: Path) -> None:
    """Control without forkhooks: the aborted worker's query goes on running on the server."""
    _, still = abort_mid_query(mysql_dsn, tmp_path)
    assert still
