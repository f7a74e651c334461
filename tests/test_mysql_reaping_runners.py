"""On MySQL/MariaDB, uWSGI, Huey (-k process) and django-q2 end the session of a child that died mid-query
(SIGKILL, a busy worker at uWSGI's group stop, django-q2's task timeout), from the child's registry file
(tests/test_mysql_reaping_servers.py does gunicorn, Celery and RQ).

The stuck query waits for a row lock the test holds (tests/mysqlreap.py): MariaDB ends a dead client's
SLEEP() by itself within 5 s, a lock wait never. Who ends it: uWSGI's respawned worker (its post-fork
hook reads the pid its slot held) or, at a group stop, the master's exit; Huey's consumer (its loop sees
the worker's exit code); django-q2's Sentinel (before it reincarnates the worker). Each case has its
control: FORKHOOKS_TEST_MYSQL_REAP=0 in the settings module (the supervisor ends no MySQL session); the
query then still waits 5 s after the kill.
"""

from __future__ import annotations

import os
import secrets
import signal
import threading
import time
from pathlib import Path

import pytest

from forkhooks._core import mysql
from forkhooks.demo import loadgen
from forkhooks.demo.loadgen import Results

from .harness import PYTHON
from .jobrunners import WorkerProcess, client, comes_true
from .mysqlreap import CONTROL_WATCH, GONE_WITHIN, announced, end_stuck, exists, kill_and_watch, owner, stuck_sessions
from .mysqlrunners import manage
from .record import record
from .servers import Server, children, poll, start
from .uwsgiservers import UWSGI, WORKERS

pytestmark = [pytest.mark.slow, pytest.mark.e2e, pytest.mark.usefixtures("server_up_a_while", "row_lock")]

RUNNERS_SETTINGS = "tests.project.settings_mysqlreap_runners"
READY = "forkhooks:ready"  # tests/project/mysqlrunners: one row per worker started


def _case(reap: bool, name: str) -> str:
    return name if reap else "control"


# -- 1. uWSGI's default prefork, 4 workers ---------------------------------------------------------------


def uwsgi(mysql_dsn: str, tmp_path: Path, reap: bool) -> Server:
    """uWSGI with `import = forkhooks.uwsgi`, 4 workers forked from a master that loaded the MySQL site."""
    lines = ["[uwsgi]", "master = true", f"processes = {WORKERS}", "enable-threads = true"]
    lines += ["import = forkhooks.uwsgi", "module = tests.project.mysqlsite.wsgi:application", "need-app = true"]
    lines += [f"http-socket = {tmp_path / 'app.sock'}", "die-on-term = true", "disable-logging = true"]
    ini = tmp_path / "uwsgi.ini"
    ini.write_text("\n".join(lines) + "\n")
    env = {"FORKHOOKS_MYSQL_DSN": mysql_dsn, "DJANGO_SETTINGS_MODULE": "tests.project.mysqlreap_settings"}
    if not reap:
        env["FORKHOOKS_TEST_MYSQL_REAP"] = "0"
    return start([*UWSGI, "--ini", str(ini), "--worker-reload-mercy", "10"], mysql_dsn, tmp_path, env=env)


@pytest.mark.parametrize("reap", [True, False], ids=["forkhooks.uwsgi", "control"])
def test_uwsgi_sigkilled_worker_session_ends(reap: bool, mysql_dsn: str, tmp_path: Path) -> None:
    """SIGKILL the worker stuck in a query: its respawned successor ends its session within 3 s and says so in one
    line. Control (reaping off): still waiting 5 s after the kill."""
    server = uwsgi(mysql_dsn, tmp_path, reap)
    request = threading.Thread(target=lambda: loadgen.get(server.target, "/locked", timeout=60), daemon=True)
    took: float | None = None
    try:
        poll(lambda: len(children(server.pid)) == WORKERS, timeout=15, what=f"{WORKERS} workers")
        request.start()
        found: list[int] = []
        poll(lambda: bool(found.extend(stuck_sessions(mysql_dsn)) or found), timeout=15, what="the view's query")
        session = found[0]
        worker = owner(children(server.pid), session)
        took = kill_and_watch(mysql_dsn, worker, session, reap)
        poll(lambda: worker not in children(server.pid), timeout=5, what="the killed worker reaped")
        poll(lambda: len(children(server.pid)) == WORKERS, timeout=15, what="the worker respawned")
        log = server.log()
    finally:
        server.kill()
        end_stuck(mysql_dsn)
    record("mysql-reaping", f"uwsgi-sigkill-{_case(reap, 'forkhooks')}", Results(), gone_s=took)
    line = f"the process it replaces ({worker}) died without closing: ended 1 backend(s)"
    if reap:
        assert took is not None and took <= GONE_WITHIN, log[-3000:]
        assert line in log and "Traceback" not in log, log[-3000:]
        assert not mysql.read_registry(worker), "the dead worker's registry file was left"
    else:
        assert took is None, f"the session ended {took}s after the kill without reaping"
        assert line not in log


@pytest.mark.parametrize("reap", [True, False], ids=["forkhooks.uwsgi", "control"])
def test_uwsgi_group_stop_ends_the_busy_workers_session(reap: bool, mysql_dsn: str, tmp_path: Path) -> None:
    """Group SIGTERM while a worker waits on the lock: uWSGI skips that worker's atexit and respawns nothing, so the
    master's exit ends its session, within 3 s of the worker's death. Control (reaping off): still waiting 5 s after."""
    server = uwsgi(mysql_dsn, tmp_path, reap)
    request = threading.Thread(target=lambda: loadgen.get(server.target, "/locked", timeout=60), daemon=True)
    took: float | None = None
    try:
        poll(lambda: len(children(server.pid)) == WORKERS, timeout=15, what=f"{WORKERS} workers")
        request.start()
        found: list[int] = []
        poll(lambda: bool(found.extend(stuck_sessions(mysql_dsn)) or found), timeout=15, what="the view's query")
        session = found[0]
        worker = owner(children(server.pid), session)
        os.killpg(server.pid, signal.SIGTERM)
        poll(lambda: not os.path.exists(f"/proc/{worker}"), timeout=15, what=f"worker {worker} gone")
        died = time.monotonic()
        if comes_true(lambda: not exists(mysql_dsn, session), timeout=GONE_WITHIN if reap else CONTROL_WATCH):
            took = round(time.monotonic() - died, 2)
        code = server.proc.wait(15)
        log = server.log()
    finally:
        server.kill()
        end_stuck(mysql_dsn)
    record("mysql-reaping", f"uwsgi-busy-stop-{_case(reap, 'forkhooks')}", Results(), gone_s=took)
    line = "ended 1 backend(s) of children that died without closing"
    if reap:
        assert took is not None and took <= GONE_WITHIN, log[-3000:]
        assert line in log and "Traceback" not in log, log[-3000:]
        assert code == 0 and "NO MERCY" not in log, log[-3000:]
    else:
        assert took is None, f"the session ended {took}s after the worker's death without reaping"
        assert line not in log


# -- 2. Huey -k process and 3. django-q2, with "forkhooks.django" ----------------------------------------

ENQUEUE = """
import sys, django
django.setup()
if sys.argv[1] == "huey":
    from tests.project.mysqlrunners.tasks import locked
    locked()
else:  # "django-q2", or "django-q2-timeout": a 1 s task timeout
    from django_q.tasks import async_task
    options = {"timeout": 1} if sys.argv[1].endswith("timeout") else {}
    async_task("tests.project.mysqlreap_jobs.locked", **options)
"""


def runner(mysql_dsn: str, sock: Path, tmp_path: Path, name: str, reap: bool) -> tuple[WorkerProcess, dict[str, str]]:
    """run_huey -k process -w 4, or qcluster (4 workers), on MariaDB with forkhooks.django; its 4 workers started."""
    env = {"DJANGO_SETTINGS_MODULE": RUNNERS_SETTINGS, "FORKHOOKS_MYSQL_DSN": mysql_dsn}
    env["FORKHOOKS_TEST_QUEUE"] = f"q{secrets.token_hex(4)}"  # the test's own queue
    if not reap:
        env["FORKHOOKS_TEST_MYSQL_REAP"] = "0"
    if name == "huey":
        argv = [PYTHON, "-m", "django", "run_huey", "-k", "process", "-w", "4"]
    else:
        argv = [PYTHON, "-m", "django", "qcluster"]
    worker = WorkerProcess(argv, mysql_dsn, sock, tmp_path, env)
    try:
        poll(lambda: worker.alive() and client(sock).llen(READY) >= 4, timeout=60, what=f"{name} workers started")
    except BaseException:
        worker.kill()
        raise
    return worker, {**env, "FORKHOOKS_TEST_REDIS": str(sock)}


# (runner, what the supervisor says once it ended the dead worker's session)
RUNNERS = [
    ("huey", "forkhooks: huey process {pid} died (signal 9) without closing: ended 1 backend(s)"),
    ("django-q2", "forkhooks: process {pid} ended (exit code -9) without closing: ended 1 backend(s)"),
]


@pytest.mark.usefixtures("broker")  # the session's Redis, emptied; django-q2's tables migrated
@pytest.mark.parametrize("reap", [True, False], ids=["forkhooks.django", "control"])
@pytest.mark.parametrize(("name", "said"), RUNNERS, ids=[r[0] for r in RUNNERS])
def test_runner_sigkilled_worker_session_ends(
    name: str, said: str, reap: bool, mysql_dsn: str, redis_socket: Path, tmp_path: Path
) -> None:
    """A worker SIGKILLed (the OOM killer) mid-job, waiting on the lock: the supervisor ends its session within 3 s
    (Huey's consumer in its next loop, django-q2's Sentinel before it reincarnates it). Control: it runs on 5 s."""
    worker, env = runner(mysql_dsn, redis_socket, tmp_path, name, reap)
    took = code = None
    try:
        manage(mysql_dsn, env, "-c", ENQUEUE, name)
        pid, session = announced(redis_socket, mysql_dsn)
        took = kill_and_watch(mysql_dsn, pid, session, reap)
        if name == "django-q2":  # the Sentinel reincarnates it either way (Huey waits for its 10 s health check)
            poll(lambda: client(redis_socket).llen(READY) >= 5, timeout=20, what="the reincarnated worker")
        code = worker.stop(signal.SIGTERM if name == "huey" else signal.SIGINT)
    finally:
        worker.kill()
        end_stuck(mysql_dsn)
    log = worker.log()
    record("mysql-reaping", f"{name}-sigkill-{_case(reap, 'forkhooks')}", Results(), gone_s=took)
    line = said.format(pid=pid)
    if reap:
        assert took is not None and took <= GONE_WITHIN, log[-3000:]
        assert line in log, log[-3000:]
        assert not mysql.read_registry(pid), "the dead worker's registry file was left"
        assert code == 0, log[-3000:]  # the supervisor went on and stopped cleanly
    else:
        assert took is None, f"the session ended {took}s after the kill without reaping"
        assert line not in log


@pytest.mark.usefixtures("broker")
@pytest.mark.parametrize("reap", [True, False], ids=["forkhooks.django", "control"])
def test_djangoq_timed_out_worker_session_ends(reap: bool, mysql_dsn: str, redis_socket: Path, tmp_path: Path) -> None:
    """A task past its 1 s timeout, waiting on the lock (mysqlclient waits in C: django-q2's alarm does not stop
    it): the Sentinel cancels the query before it terminates the worker, which closes and dies: its session gone
    within 3 s of the Sentinel's timeout line. Control: it waits on 5 s."""
    worker, env = runner(mysql_dsn, redis_socket, tmp_path, "django-q2", reap)
    took: float | None = None
    try:
        manage(mysql_dsn, env, "-c", ENQUEUE, "django-q2-timeout")
        pid, session = announced(redis_socket, mysql_dsn)
        poll(lambda: "after timeout" in worker.log(), timeout=30, what="the Sentinel terminating the worker")
        timed_out = time.monotonic()
        if comes_true(lambda: not exists(mysql_dsn, session), timeout=GONE_WITHIN if reap else CONTROL_WATCH):
            took = round(time.monotonic() - timed_out, 2)
    finally:
        worker.kill()  # the control's worker is still in its query: no graceful stop
        end_stuck(mysql_dsn)
    log = worker.log()
    record("mysql-reaping", f"django-q2-timeout-{_case(reap, 'forkhooks')}", Results(), gone_s=took)
    line = f"forkhooks: worker {pid} past its timeout: cancelled 1 running query(ies) before it is killed"
    if reap:
        assert took is not None and took <= GONE_WITHIN, log[-3000:]
        assert line in log, log[-3000:]
    else:
        assert took is None, f"the session ended {took}s after the timeout without reaping"
        assert "cancelled 1 running" not in log
