"""django-tasks-scheduler's worker (``python -m django scheduler_worker``) against PostgreSQL, Django's pool on.

The worker forks a job execution process per job (as RQ's work horse) after closing its own thread's
connections; its scheduler thread reads the scheduled tasks through the ORM. The worker's process runs
a start-up query before it forks (tests/project/startup.py). The only forkhooks line is
``"forkhooks.django"`` in INSTALLED_APPS.
"""

from __future__ import annotations

import secrets
import subprocess
from pathlib import Path

import psycopg
import pytest

from .harness import PYTHON, ROOT, child_env
from .jobrunners import (
    WorkerProcess,
    backend_exists,
    backends_left,
    client,
    collect,
    end_sleeps,
    kill_mid_query,
    parent,
    poll,
    sessions,
    tally,
)
from .record import record

# A runner behaves the same on every Python and Django here: run once in the matrix (py311).
pytestmark = pytest.mark.slow

WITH_APP = "tests.project.settings_sched"
WITHOUT = "tests.project.settings_sched_without"
N = 100


@pytest.fixture(scope="module")
def migrated(dsn: str, redis_socket: Path) -> str:
    """django-tasks-scheduler's tables (its scheduler thread reads them), created once for this module."""
    env = child_env(dsn, DJANGO_SETTINGS_MODULE=WITHOUT, FORKHOOKS_TEST_REDIS=str(redis_socket))
    argv = [PYTHON, "-m", "django", "migrate", "--noinput"]
    done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return dsn


@pytest.fixture
def broker(redis_socket: Path, migrated: str) -> Path:
    """The session's Redis, emptied: no job or answer of an earlier test is left."""
    client(redis_socket).flushall()
    return redis_socket


def enqueue(dsn: str, sock: Path, job: str, args: list[str]) -> None:
    """Enqueue with django-tasks-scheduler's own queue, from a process of its own."""
    env = child_env(dsn, FORKHOOKS_TEST_REDIS=str(sock), DJANGO_SETTINGS_MODULE=WITHOUT)
    argv = [PYTHON, "-m", "tests.project.enqueue", "scheduler", job, *args]
    done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]


def worker(dsn: str, sock: Path, tmp: Path, settings: str, *, burst: bool) -> WorkerProcess:
    """`python -m django scheduler_worker default` (with its scheduler thread)."""
    argv = [PYTHON, "-m", "django", "scheduler_worker", *(["--burst"] if burst else []), "default"]
    return WorkerProcess(argv, dsn, sock, tmp, {"DJANGO_SETTINGS_MODULE": settings})


CASES = [("forkhooks.django", WITH_APP), ("control", WITHOUT)]
# Without forkhooks and with Django's pool no job reaches its query (above): the kill's control runs without a pool.
KILLED = [("forkhooks.django", WITH_APP), ("control-no-pool", "tests.project.settings_sched_nopool_without")]


@pytest.mark.e2e
@pytest.mark.parametrize(("case", "settings"), CASES, ids=[c[0] for c in CASES])
def test_scheduler_worker(
    case: str, settings: str, dsn: str, db: psycopg.Connection, broker: Path, tmp_path: Path
) -> None:
    """Every job right on a backend of its own; the worker's session is never killed by a job's process."""
    tags = [f"{i}-{secrets.token_hex(6)}" for i in range(N)]
    enqueue(dsn, broker, "echo", tags)
    control = case == "control"
    start = sessions(db)
    proc = worker(dsn, broker, tmp_path, settings, burst=True)
    try:
        rows = collect(broker, N, proc, stop_after_bad=3 if control else None, timeout=180)
        before = parent(broker).get("before")
        held = isinstance(before, int) and backend_exists(db, before)
        # --burst: it exits once the queue is drained. A control is killed: its jobs wait on a broken pool.
        code = None if control else proc.proc.wait(60)
    finally:
        proc.kill()
    opened = sessions(db) - start
    results = tally(tags, rows)
    par = parent(broker)
    left = backends_left(db)
    answered = [r for r in rows if "backend" in r]
    backends = {r["backend"] for r in answered}
    record(
        "tasks-scheduler",
        case,
        results,
        parent_errors=len(par["errors"]),
        job_backends=len(backends),
        conns_per_100=round(100 * opened / N, 1),
        main_holds_startup_backend=held,
        backends_left=left,
    )
    log = proc.log()
    if control:
        # The worker closed its connection before forking, into Django's pool, which stayed open: every job's
        # process inherited the pool without its threads, and waited for it until its timeout.
        assert results.failed >= 3, results.summary()
        assert any("couldn't get a connection" in e for e in results.errors), results.summary()
        return
    assert code == 0, log[-3000:]
    assert (results.failed, results.wrong) == (0, 0), (results.summary(), log[-3000:])
    assert par["errors"] == [], (par, log[-3000:])  # no job's process killed the worker's session
    assert len(backends) == len(answered) == N  # each job's process on a backend of its own
    assert not held, par  # the worker closed its start-up session before the forks
    assert left == 0
    assert opened <= N + 10, opened  # one connection per job (pools open on demand), and a few for the worker
    assert "forkhooks: scheduler worker" in log, log[-3000:]


@pytest.mark.e2e
@pytest.mark.parametrize(("case", "settings"), KILLED, ids=[c[0] for c in KILLED])
def test_job_process_killed_mid_query(
    case: str, settings: str, dsn: str, db: psycopg.Connection, broker: Path, tmp_path: Path
) -> None:
    """A job's process SIGKILLed (the OOM killer, kill -9) in pg_sleep(30): its query is gone within 3 s."""
    enqueue(dsn, broker, "slow", ["30"])
    proc = worker(dsn, broker, tmp_path, settings, burst=False)
    try:
        _, killed, still = kill_mid_query(db, broker, proc)
        if not case.startswith("control"):
            poll(lambda: "died without closing" in proc.log(), timeout=10, what="the worker's line")
        code = proc.stop()
    finally:
        proc.kill()
        end_sleeps(db)
    record("tasks-scheduler", f"sigkill-{case}", tally([], []), query_left_running=still, stop_exit=code)
    if case.startswith("control"):
        assert still, "without forkhooks.django the killed job's query ended anyway"
        return
    assert not still, proc.log()[-3000:]
    assert f"job process {killed} died without closing: ended 1 backend(s)" in proc.log(), proc.log()[-3000:]
    assert backends_left(db) == 0
