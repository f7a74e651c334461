"""RQ on MySQL/MariaDB: a work horse forked per job from a main process that holds a session."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

import pytest
import rq

from .harness import PYTHON
from .jobrunners import WorkerProcess, client, collect, parent, tally
from .record import record

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

N = 30


def run(mysql_dsn: str, sock: Path, tmp_path: Path, worker_class: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Enqueue N echo jobs, run a burst worker of `worker_class`; (the answers, what the main process saw)."""
    client(sock).flushall()
    queue = rq.Queue("default", connection=client(sock))
    tags = [f"{i}-{secrets.token_hex(6)}" for i in range(N)]
    for tag in tags:
        queue.enqueue("tests.project.mysqlrq.echo", tag)  # by name: importing it would set Django up here
    argv = [PYTHON, "-c", "from rq.cli import main; main()", "worker", "-w", worker_class]
    argv += ["--url", f"unix://{sock}", "--burst", "default"]
    env = {"DJANGO_SETTINGS_MODULE": "tests.project.mysqlsite.settings", "FORKHOOKS_MYSQL_DSN": mysql_dsn}
    worker = WorkerProcess(argv, mysql_dsn, sock, tmp_path, env)
    try:
        rows = collect(sock, N, worker)
        assert worker.proc.wait(60) == 0, worker.log()[-3000:]
    finally:
        worker.kill()
    results = tally(tags, rows)
    seen = parent(sock)
    shared = sum(1 for r in rows if r.get("backend") == seen.get("before"))
    record("mysql-rq", worker_class.rsplit(".", 1)[-1], results, shared=shared, parent_kept=seen["survived"])
    assert results.failed == 0, (results.summary(), worker.log()[-3000:])
    return rows, {**seen, "shared": shared, "wrong": results.wrong}


def test_rq_horses_get_their_own_sessions(mysql_dsn: str, redis_socket: Path, tmp_path: Path) -> None:
    """forkhooks.rq.Worker: every job on a session of its own; the main process's queries all succeed.

    (It closes its connections before each fork, so without a pool its next query opens a new session.)
    """
    rows, seen = run(mysql_dsn, redis_socket, tmp_path, "tests.project.mysqlrq.ForkhooksProbe")
    assert (seen["shared"], seen["wrong"]) == (0, 0), seen
    assert len({r["backend"] for r in rows}) == N, rows  # one session per horse
    assert seen["errors"] == [] and seen["after"] != "error", seen


def test_control_rq_horses_use_the_main_process_session(mysql_dsn: str, redis_socket: Path, tmp_path: Path) -> None:
    """Control, rq.Worker: the horses answer on the main process's session (one session, two processes)."""
    _, seen = run(mysql_dsn, redis_socket, tmp_path, "tests.project.mysqlrq.PlainProbe")
    assert seen["shared"] + seen["wrong"] > 0, seen
