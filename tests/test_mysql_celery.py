"""Celery's prefork pool on MySQL/MariaDB, from a main process that holds a session at fork."""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any

import pytest

from . import mariadb
from .harness import PYTHON
from .jobrunners import WorkerProcess, client, collect, parent, poll, tally
from .record import record

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

N = 40


def run(mysql_dsn: str, sock: Path, tmp_path: Path, env: dict[str, str]) -> dict[str, Any]:
    """Start a 4-process prefork worker, send N echo tasks, stop it with SIGTERM; what was measured."""
    from celery import Celery

    client(sock).flushall()
    argv = [PYTHON, "-m", "celery", "-A", "tests.project.mysqlcelery", "worker", "-P", "prefork", "-c", "4"]
    argv += ["-l", "info", "--without-gossip", "--without-mingle", "--without-heartbeat", "-n", f"my{os.getpid()}@%h"]
    worker_env = {"DJANGO_SETTINGS_MODULE": "tests.project.mysqlsite.settings", "FORKHOOKS_MYSQL_DSN": mysql_dsn}
    worker = WorkerProcess(argv, mysql_dsn, sock, tmp_path, {**worker_env, **env})
    app = Celery("sender", broker=f"redis+socket://{sock}", set_as_current=False)
    try:
        r = client(sock)
        poll(lambda: worker.alive() and r.get("forkhooks:ready") is not None, timeout=60, what="celery worker ready")
        tags = [f"{i}-{secrets.token_hex(6)}" for i in range(N)]
        for tag in tags:
            app.send_task("echo", [tag])
        rows = collect(sock, N, worker)
        code = worker.stop()
    finally:
        app.close()
        worker.kill()
    seen = parent(sock)
    shared = sum(1 for row in rows if row.get("backend") == seen.get("before"))
    return {"results": tally(tags, rows), "parent": seen, "shared": shared, "code": code, "log": worker.log()}


@pytest.mark.parametrize("driver", ["mysqlclient", "pymysql"])
def test_celery_prefork_on_mysql(driver: str, mysql_dsn: str, redis_socket: Path, tmp_path: Path) -> None:
    """forkhooks.celery: every task right, none on the main process's session, no error, no session left."""
    out = run(mysql_dsn, redis_socket, tmp_path, {"FORKHOOKS_TEST_CELERY": "1", "FORKHOOKS_MYSQL_DRIVER": driver})
    results, seen = out["results"], out["parent"]
    record("mysql-celery", f"forkhooks-{driver}", results, shared=out["shared"], parent_errors=len(seen["errors"]))
    assert out["code"] == 0, out["log"][-3000:]
    assert (results.failed, results.wrong, out["shared"]) == (0, 0, 0), (results.summary(), out["log"][-3000:])
    assert seen["errors"] == [], seen
    poll(lambda: mariadb.sessions(mysql_dsn) == [], timeout=10, what="every app session gone after the stop")


def test_control_celery_prefork_on_mysql(mysql_dsn: str, redis_socket: Path, tmp_path: Path) -> None:
    """Control without forkhooks, PyMySQL: Celery's Django fixup closes the inherited connection in each child.

    It closes the fd first where the driver has fileno() (mysqlclient: nothing sent); PyMySQL has none,
    so its close sends COM_QUIT on the main process's socket and the main process's session is gone.
    """
    out = run(mysql_dsn, redis_socket, tmp_path, {"FORKHOOKS_MYSQL_DRIVER": "pymysql"})
    results, seen = out["results"], out["parent"]
    record("mysql-celery", "control-pymysql", results, shared=out["shared"], parent_errors=len(seen["errors"]))
    assert seen["errors"], (seen, out["shared"], results.summary())
