"""MySQL/MariaDB behind real uWSGI (pyuwsgi) beyond the default prefork: lazy-apps, and harakiri mid-query."""

from __future__ import annotations

import signal
import threading
from pathlib import Path

import pytest

from forkhooks.demo import loadgen

from . import mariadb
from .jobrunners import comes_true
from .mysqlhttp import end_sleeps, sleeping, tagged
from .record import record
from .servers import Server, poll
from .uwsgiservers import all_idle, serve_mysql

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

REQUESTS = 200
# SIGPWR: a signal uWSGI leaves alone in workers, so forkhooks can handle it (tests/test_uwsgi.py).
GRACEFUL = ["harakiri-graceful-timeout = 5", f"harakiri-graceful-signal = {int(signal.SIGPWR)}"]
MAIN_THREAD = ["import = tests.project.harakiri_main_thread"]  # forkhooks' thread for it undone


LAZY = [(d, f) for d in ("mysqlclient", "pymysql") for f in (True, False)]


@pytest.mark.parametrize(("driver", "forkhooks"), LAZY, ids=[f"{'forkhooks' if f else 'control'}-{d}" for d, f in LAZY])
def test_lazy_apps_every_worker_its_own_session(driver: str, forkhooks: bool, mysql_dsn: str, tmp_path: Path) -> None:
    """lazy-apps: each worker loads the app (and runs the start-up query) itself, so nothing is inherited.

    With forkhooks: 0 failed, 0 wrong, no session answers two workers, every session closed at the stop.
    The control shows the same rows (there is nothing to share) and what a stop without forkhooks leaves.
    """
    poll(lambda: mariadb.sessions(mysql_dsn) == [], timeout=10, what="no session left by an earlier test")
    aborted = mariadb.aborted_clients(mysql_dsn)
    server = serve_mysql(mysql_dsn, tmp_path, driver, forkhooks=forkhooks, extra=("lazy-apps = true",))
    try:
        # Every worker loaded its app (its start-up query ran) before the load: a stop that reaches a worker
        # still loading is lost (tests/test_uwsgi.py).
        poll(lambda: len(mariadb.sessions(mysql_dsn)) >= 4, timeout=30, what="4 workers' start-up sessions")
        results, owners = tagged(server, REQUESTS)
        all_idle(server)  # uWSGI skips uwsgi.atexit in a worker a stop finds busy (uWSGI #2063)
    finally:
        code = server.stop()
    poll(lambda: mariadb.sessions(mysql_dsn) == [], timeout=10, what="every app session gone after the stop")
    aborted = mariadb.aborted_clients(mysql_dsn) - aborted
    case = f"{'forkhooks' if forkhooks else 'control'}-{driver}"
    record("mysql-uwsgi-lazy", case, results, sessions=len(owners), aborted=aborted)
    assert (results.failed, results.wrong) == (0, 0), (results.summary(), server.log()[-3000:])
    assert all(len(pids) == 1 for pids in owners.values()), owners  # no session serves two workers
    assert len(owners) == len(results.pids), (owners, results.summary())  # one session per worker that served
    assert code == 0, server.log()[-3000:]
    assert "Traceback" not in server.log(), server.log()[-3000:]
    if forkhooks:
        assert aborted == 0, server.log()[-3000:]
        assert server.log().count("forkhooks: worker") >= 4, server.log()[-3000:]
    else:
        print("lazy-apps control: aborted at stop", aborted)


def stuck_request(server: Server, status: list[int]) -> threading.Thread:
    """A request in SELECT SLEEP(30), in a thread; its status goes to `status` (0: the worker died under it)."""

    def get() -> None:
        try:
            status.append(loadgen.get(server.target, "/sleep?seconds=30", timeout=40)[0])
        except Exception:
            status.append(0)

    request = threading.Thread(target=get, daemon=True)  # a control's answer never comes
    request.start()
    return request


# (case, driver, forkhooks, harakiri lines)
HARAKIRI = [
    ("graceful-pymysql", "pymysql", True, ["harakiri = 2", *GRACEFUL]),
    ("graceful-mysqlclient", "mysqlclient", True, ["harakiri = 2", *GRACEFUL]),
    ("control-plain-mysqlclient", "mysqlclient", False, ["harakiri = 2"]),
    # The signal taken by the main thread's handler only: it runs after mysqlclient's query, too late.
    ("control-main-thread-mysqlclient", "mysqlclient", True, [*MAIN_THREAD, "harakiri = 2", *GRACEFUL]),
]


@pytest.mark.parametrize(("case", "driver", "forkhooks", "lines"), HARAKIRI, ids=[c[0] for c in HARAKIRI])
def test_harakiri_mid_query(
    case: str, driver: str, forkhooks: bool, lines: list[str], mysql_dsn: str, tmp_path: Path
) -> None:
    """A worker stuck in SELECT SLEEP(30) past harakiri = 2.

    Graceful (harakiri-graceful-signal to one forkhooks handles): KILL QUERY ends the query within 3 s of
    the harakiri; the worker lives on. Controls: plain harakiri (uWSGI SIGKILLs the worker) and, with
    mysqlclient, the signal taken by the main thread only (its handler waits for the query): the query runs on.
    """
    server = serve_mysql(mysql_dsn, tmp_path, driver, forkhooks=forkhooks, extra=tuple(lines))
    try:
        status: list[int] = []
        request = stuck_request(server, status)
        poll(lambda: sleeping(mysql_dsn) == 1, timeout=10, what="the view's SLEEP(30) running")
        poll(lambda: "HARAKIRI ON WORKER" in server.log(), timeout=10, what="harakiri")
        still = not comes_true(lambda: sleeping(mysql_dsn) == 0, timeout=3)
        request.join(5 if not still else 0)
        # The graceful timeout (5 s) passed: a worker still stuck would have been SIGKILLed by now.
        comes_true(lambda: "killed by signal" in server.log(), timeout=0 if still else 6)
        log = server.log()
    finally:
        server.kill()
        end_sleeps(mysql_dsn)  # a control leaves it running: end it
    record("mysql-uwsgi-harakiri", case, loadgen.Results(), query_left_running=still, status=status[:1])
    if case.startswith("control"):
        assert still, log[-3000:]
        return
    assert not still, log[-3000:]
    assert "cancelled 1 running query(ies)" in log, log[-3000:]
    assert status == [500], (status, log[-3000:])  # the request failed on its killed query, at once
    assert "killed by signal" not in log, log[-3000:]  # the worker lives on
