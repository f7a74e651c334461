"""RQ's WorkerPool under django-rq's ``rqworker-pool`` (4 workers, a horse per job) against PostgreSQL.

The pool's main process runs a start-up query before it forks its workers (tests/project/startup.py),
as a project's start-up check does, and checks that session again when it exits.
"""

from __future__ import annotations

import secrets
import subprocess
from pathlib import Path

import psycopg
import pytest
import rq

from .harness import PYTHON
from .jobrunners import (
    WorkerProcess,
    backends_left,
    client,
    collect,
    end_sleeps,
    kill_mid_query,
    parent,
    tally,
)
from .project import jobs
from .record import record

# A runner or a proxy behaves the same on every Python and Django here: run once in the matrix (py311).
pytestmark = pytest.mark.slow

WITH_APP = "tests.project.settings_jobs_pool"
WITHOUT = "tests.project.settings_jobs_pool_without"
N = 200


@pytest.fixture
def broker(redis_socket: Path) -> Path:
    """The session's Redis, emptied: no job or answer of an earlier test is left."""
    client(redis_socket).flushall()
    return redis_socket


def pool(dsn: str, sock: Path, tmp: Path, settings: str, *extra: str, burst: bool) -> WorkerProcess:
    """django-rq's `rqworker-pool --num-workers 4` on the default queue."""
    argv = [PYTHON, "-m", "django", "rqworker-pool", "--num-workers", "4", *extra, "default"]
    return WorkerProcess([*argv, *(["--burst"] if burst else [])], dsn, sock, tmp, {"DJANGO_SETTINGS_MODULE": settings})


def main_backends(db: psycopg.Connection, backend: int) -> bool:
    """Whether the main process's start-up backend is still connected."""
    return bool(db.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", [backend]).fetchall())


# (case, settings, extra rqworker-pool arguments)
CASES = [
    ("forkhooks.django", WITH_APP, ()),
    ("forkhooks.rq.Worker-without-the-app", WITHOUT, ("--worker-class", "forkhooks.rq.Worker")),
    ("control", WITHOUT, ()),
]


@pytest.mark.e2e
@pytest.mark.parametrize(("case", "settings", "extra"), CASES, ids=[c[0] for c in CASES])
def test_rqworker_pool(
    case: str, settings: str, extra: tuple[str, ...], dsn: str, db: psycopg.Connection, broker: Path, tmp_path: Path
) -> None:
    """Every job right on a backend of its own; the main process's session is never killed by a child."""
    queue = rq.Queue("default", connection=client(broker))
    tags = [f"{i}-{secrets.token_hex(6)}" for i in range(N)]
    for tag in tags:
        queue.enqueue(jobs.echo, tag)
    worker = pool(dsn, broker, tmp_path, settings, *extra, burst=case != "control")
    try:
        rows = collect(broker, N, worker, stop_after_bad=3 if case == "control" else None, timeout=180)
        before = parent(broker).get("before")
        held = isinstance(before, int) and main_backends(db, before)
        if case != "control":  # a control is killed: WorkerPool's own stop can hang (workers blocked in Redis BLMOVE)
            assert worker.proc.wait(60) == 0, worker.log()[-3000:]  # --burst: it exits once the queue is drained
    finally:
        worker.kill()
    results = tally(tags[: len(rows)] if case == "control" else tags, rows)
    par = parent(broker)
    left = backends_left(db)
    answered = [r for r in rows if "backend" in r]
    record(
        "rq-pool",
        case,
        results,
        parent_errors=len(par["errors"]),
        main_holds_startup_backend=held,
        backends_left=left,
        job_backends=len({r["backend"] for r in answered}),
    )
    if case == "control":
        shared = len({r["backend"] for r in answered}) < len(answered)
        assert results.failed + results.wrong >= 3 or par["errors"] or shared, (results.summary(), par)
        return
    assert (results.failed, results.wrong) == (0, 0), (results.summary(), worker.log()[-3000:])
    assert par["errors"] == [], (par, worker.log()[-3000:])  # no child killed the main process's session
    assert len({r["backend"] for r in answered}) == len(answered)  # each horse its own backend
    assert left == 0
    if case == "forkhooks.django":
        # The main process closed its start-up session before forking: it holds no backend while it supervises.
        assert not held, par
        assert "forkhooks: rq pool" in worker.log(), worker.log()[-3000:]


@pytest.mark.e2e
def test_rqworker_pool_horse_killed_mid_query(dsn: str, db: psycopg.Connection, broker: Path, tmp_path: Path) -> None:
    """Under rqworker-pool with forkhooks.django only, a horse SIGKILLed in pg_sleep(30): query gone within 3 s."""
    queue = rq.Queue("default", connection=client(broker))
    queue.enqueue(jobs.slow, 30, job_timeout=120)
    worker = pool(dsn, broker, tmp_path, WITH_APP, burst=False)
    try:
        _, _, still = kill_mid_query(db, broker, worker)
        try:
            stopped: int | None = worker.stop()
        except subprocess.TimeoutExpired:  # WorkerPool's own stop can hang, with or without forkhooks: killed
            stopped = None
    finally:
        worker.kill()
        end_sleeps(db)
    record("rq-pool", "sigkill-horse", tally([], []), query_left_running=still, stop_exit=stopped)
    assert not still, worker.log()[-3000:]
    assert backends_left(db) == 0
