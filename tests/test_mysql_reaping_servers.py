"""On MySQL/MariaDB, no query outlives the process that ran it: gunicorn's master, Celery's main process and RQ's
worker end the session of a child SIGKILLed mid-query, from the child's registry file.

The stuck query waits for a row lock the test holds (up to 50 s): MariaDB's SLEEP() would end by
itself within 5 s of its client's death (it looks at the client every 5 s), a lock wait never does.
Each case has its control: the same server with FORKHOOKS_TEST_MYSQL_REAP=0 (tests/project/mysqlreap_settings.py:
the supervisor ends no MySQL session, as before it read the registry); the query then still waits 5 s after the kill.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
import rq

from forkhooks._core import mysql
from forkhooks.demo import loadgen
from forkhooks.demo.loadgen import Results

from .harness import PYTHON
from .jobrunners import WorkerProcess, celery, client, comes_true
from .mysqlreap import CONTROL_WATCH, GONE_WITHIN, announced, end_stuck, kill_and_watch, owner, stuck_sessions
from .record import record
from .servers import Server, children, gunicorn, poll, start, wait_workers

pytestmark = [pytest.mark.slow, pytest.mark.e2e, pytest.mark.usefixtures("server_up_a_while", "row_lock")]

SETTINGS = "tests.project.mysqlreap_settings"
WSGI = "tests.project.mysqlsite.wsgi:application"


def site_env(mysql_dsn: str, driver: str, reap: bool) -> dict[str, str]:
    """The MySQL site's environment; reap=False is the control's switch."""
    env = {"FORKHOOKS_MYSQL_DSN": mysql_dsn, "FORKHOOKS_MYSQL_DRIVER": driver, "DJANGO_SETTINGS_MODULE": SETTINGS}
    if not reap:
        env["FORKHOOKS_TEST_MYSQL_REAP"] = "0"
    return env


# -- 1. gunicorn sync, 4 preloaded workers -------------------------------------------------------------


GUNICORN = [
    ("mysqlclient", True, ["--preload"]),
    ("pymysql", True, ["--preload"]),
    ("mysqlclient-no-preload", True, []),
    # MySQL's registry does not depend on PostgreSQL's application_name: names off, still reaped.
    ("mysqlclient-names-off", True, ["--preload"]),
    ("control-mysqlclient", False, ["--preload"]),
]


@pytest.mark.parametrize(("case", "reap", "preload"), GUNICORN, ids=[c[0] for c in GUNICORN])
def test_gunicorn_sigkilled_worker_session_ends(
    case: str, reap: bool, preload: list[str], mysql_dsn: str, tmp_path: Path
) -> None:
    """SIGKILL the sync worker stuck in a query: its session is gone within 3 s and the master says so in one
    line. Control (reaping off): still waiting 5 s after the kill."""
    driver = "pymysql" if "pymysql" in case else "mysqlclient"
    argv = gunicorn("-c", "python:forkhooks.gunicorn", "-k", "sync", WSGI)
    if not preload:
        argv.remove("--preload")
    env = site_env(mysql_dsn, driver, reap)
    if "names-off" in case:
        env["FORKHOOKS_APPLICATION_NAME"] = "0"
    server: Server = start(argv, mysql_dsn, tmp_path, env=env)
    request = threading.Thread(target=lambda: loadgen.get(server.target, "/locked", timeout=60), daemon=True)
    took: float | None = None
    try:
        workers = sorted(wait_workers(server))
        request.start()
        found: list[int] = []
        poll(lambda: bool(found.extend(stuck_sessions(mysql_dsn)) or found), timeout=15, what="the view's query")
        session = found[0]
        worker = owner(workers, session)
        took = kill_and_watch(mysql_dsn, worker, session, reap)
        if reap:
            poll(lambda: worker not in children(server.pid), timeout=5, what="the killed worker reaped")
            wait_workers(server, excluding={worker})
        log = server.log()
    finally:
        server.stop()
        end_stuck(mysql_dsn)
    record("mysql-reaping", f"gunicorn-sigkill-{case}", Results(), gone_s=took)
    ended = f"forkhooks: master {server.pid} ended 1 backend(s) of worker {worker}, which died without closing them"
    if reap:
        assert took is not None and took <= GONE_WITHIN, log[-3000:]
        assert ended in log, log[-3000:]
        assert not mysql.read_registry(worker), "the dead worker's registry file was left"
    else:
        assert took is None, f"the session ended {took}s after the kill without reaping"
        assert ended not in log


# -- 2. Celery prefork ---------------------------------------------------------------------------------


def celery_worker(mysql_dsn: str, sock: Path, tmp_path: Path, reap: bool) -> WorkerProcess:
    """celery -A tests.project.mysqlreap_celery worker -P prefork -c 4 on mysqlclient, ready."""
    client(sock).flushall()
    env = site_env(mysql_dsn, "mysqlclient", reap)
    return celery(mysql_dsn, sock, tmp_path, settings=SETTINGS, env=env, app="tests.project.mysqlreap_celery")


@pytest.mark.parametrize("reap", [True, False], ids=["forkhooks.celery", "control"])
def test_celery_sigkilled_pool_process_session_ends(
    reap: bool, mysql_dsn: str, redis_socket: Path, tmp_path: Path
) -> None:
    """A pool process SIGKILLed mid-query: the main process ends its session within 3 s (control: runs on)."""
    from celery import Celery

    worker = celery_worker(mysql_dsn, redis_socket, tmp_path, reap)
    app = Celery("sender", broker=f"redis+socket://{redis_socket}", set_as_current=False)
    try:
        app.send_task("locked")
        pid, session = announced(redis_socket, mysql_dsn)
        took = kill_and_watch(mysql_dsn, pid, session, reap)
        code = worker.stop()
    finally:
        app.close()
        worker.kill()
        end_stuck(mysql_dsn)
    log = worker.log()
    record("mysql-reaping", f"celery-sigkill-{'forkhooks' if reap else 'control'}", Results(), gone_s=took)
    assert code == 0, log[-3000:]
    line = f"pool process {pid} died (SIGKILL) without closing: ended 1 backend(s)"
    if reap:
        assert took is not None and took <= GONE_WITHIN, log[-3000:]
        assert line in log, log[-3000:]
    else:
        assert took is None, f"the session ended {took}s after the kill without reaping"
        assert line not in log


@pytest.mark.parametrize("reap", [True, False], ids=["forkhooks.celery", "control"])
def test_celery_hard_time_limit_cancels_the_query(
    reap: bool, mysql_dsn: str, redis_socket: Path, tmp_path: Path
) -> None:
    """A task stuck in a query hits its 2 s hard time limit: its query is gone within 3 s of the limit
    (cancelled by the main process, then the killed process's session ended). Control: it runs on 5 s."""
    from celery import Celery

    worker = celery_worker(mysql_dsn, redis_socket, tmp_path, reap)
    app = Celery("sender", broker=f"redis+socket://{redis_socket}", set_as_current=False)
    try:
        app.send_task("locked_limited")
        pid, session = announced(redis_socket, mysql_dsn)
        poll(lambda: "Hard time limit" in worker.log(), timeout=30, what="the hard time limit")
        limit_at = time.monotonic()
        timeout = GONE_WITHIN if reap else CONTROL_WATCH
        gone = comes_true(lambda: session not in stuck_sessions(mysql_dsn), timeout=timeout)
        took = round(time.monotonic() - limit_at, 2) if gone else None
        code = worker.stop()
    finally:
        app.close()
        worker.kill()
        end_stuck(mysql_dsn)
    log = worker.log()
    record("mysql-reaping", f"celery-time-limit-{'forkhooks' if reap else 'control'}", Results(), gone_s=took)
    assert code == 0, log[-3000:]
    cancelled = f"hard time limit of pool process {pid}: cancelled 1 running query(ies)"
    if reap:
        assert took is not None, log[-3000:]
        assert cancelled in log, log[-3000:]
    else:
        assert took is None, f"the query ended {took}s after the time limit without reaping"
        assert cancelled not in log


# -- 3. RQ's work horse ---------------------------------------------------------------------------------


@pytest.mark.parametrize("reap", [True, False], ids=["forkhooks.rq", "control"])
def test_rq_sigkilled_horse_session_ends(reap: bool, mysql_dsn: str, redis_socket: Path, tmp_path: Path) -> None:
    """A horse SIGKILLed mid-query: the worker ends its session within 3 s (control: it runs on 5 s)."""
    client(redis_socket).flushall()
    queue = rq.Queue("default", connection=client(redis_socket))
    queue.enqueue("tests.project.mysqlreap_jobs.locked", job_timeout=120)
    argv = [PYTHON, "-c", "from rq.cli import main; main()", "worker", "-w", "tests.project.mysqlreap_rq.Worker"]
    argv += ["--url", f"unix://{redis_socket}", "default"]
    worker = WorkerProcess(argv, mysql_dsn, redis_socket, tmp_path, site_env(mysql_dsn, "mysqlclient", reap))
    try:
        pid, session = announced(redis_socket, mysql_dsn)
        took = kill_and_watch(mysql_dsn, pid, session, reap)
        if reap:
            poll(lambda: "died without closing" in worker.log(), timeout=5, what="the worker's line")
        worker.stop()
    finally:
        worker.kill()
        end_stuck(mysql_dsn)
    log = worker.log()
    record("mysql-reaping", f"rq-sigkill-{'forkhooks' if reap else 'control'}", Results(), gone_s=took)
    line = f"horse {pid} died without closing: ended 1 backend(s)"
    if reap:
        assert took is not None and took <= GONE_WITHIN, log[-3000:]
        assert line in log, log[-3000:]
    else:
        assert took is None, f"the session ended {took}s after the kill without reaping"
        assert line not in log
