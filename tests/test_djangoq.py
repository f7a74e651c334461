"""Real django-q2 clusters (``python -m django qcluster``, Redis broker on the test Redis) against PostgreSQL.

The qcluster process forks the Sentinel, which forks 4 workers, the monitor
and the pusher. Django's pool is on (min 1, max 4); the monitor saves results
through the ORM. The qcluster process holds a pooled connection when it
starts, as a project's start-up check does, and checks its session again
once its children are gone. The only forkhooks line is ``"forkhooks.django"``
in INSTALLED_APPS.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
from pathlib import Path

import psycopg
import pytest

from .harness import PYTHON, ROOT, child_env
from .jobrunners import (
    WorkerProcess,
    app_names,
    backend_exists,
    backends_left,
    client,
    collect,
    comes_true,
    enqueue_via,
    parent,
    per_child_backends,
    poll,
    running,
    still_running,
    stop_timed,
    tally,
)
from .project import jobs
from .record import record

# A runner or a proxy behaves the same on every Python and Django here: run once in the matrix (py311).
pytestmark = pytest.mark.slow

WITH_APP = "tests.project.settings_runners"
WITHOUT = "tests.project.settings_runners_without"
PSYCOPG2 = "tests.project.settings_runners_psycopg2"
READY = "forkhooks:ready"  # tests/project/runnerapp: one row per worker started (django-q2's post_spawn)
N = 200


@pytest.fixture(scope="module")
def migrated(dsn: str) -> str:
    """django-q2's tables (its monitor saves every result), created once for this module."""
    env = child_env(dsn, DJANGO_SETTINGS_MODULE=WITHOUT)
    argv = [PYTHON, "-m", "django", "migrate", "django_q", "--noinput"]
    done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return dsn


@pytest.fixture
def broker(redis_socket: Path, migrated: str) -> Path:
    """The session's Redis, emptied: no job or answer of an earlier test is left."""
    client(redis_socket).flushall()
    return redis_socket


def env_for(**extra: str) -> dict[str, str]:
    """The test's own cluster name (django-q2's queue key): it never meets another test's."""
    return {"FORKHOOKS_TEST_QUEUE": f"q{secrets.token_hex(4)}", **extra}


def qcluster(dsn: str, sock: Path, tmp: Path, settings: str, env: dict[str, str]) -> WorkerProcess:
    """`python -m django qcluster` (4 workers), waiting (bounded) until its workers started."""
    argv = [PYTHON, "-m", "django", "qcluster"]
    worker = WorkerProcess(argv, dsn, sock, tmp, {"DJANGO_SETTINGS_MODULE": settings, **env})
    try:
        poll(lambda: worker.alive() and client(sock).llen(READY) >= 4, timeout=60, what="django-q2 workers started")
    except BaseException:
        worker.kill()
        raise
    return worker


# (case, settings)
CASES = [("forkhooks.django", WITH_APP), ("control", WITHOUT)]


@pytest.mark.e2e
@pytest.mark.parametrize(("case", "settings"), CASES, ids=[c[0] for c in CASES])
def test_q2_cluster(case: str, settings: str, dsn: str, db: psycopg.Connection, broker: Path, tmp_path: Path) -> None:
    """4 workers, 200 jobs: every answer right, the qcluster process's session never killed and not held, 0 backends
    after SIGTERM to the group (systemd). The control (no forkhooks.django) stops at its first 3 bad answers."""
    env = env_for(FORKHOOKS_TEST_PARENT="1")
    worker = qcluster(dsn, broker, tmp_path, settings, env)
    tags = [f"{i}-{secrets.token_hex(6)}" for i in range(N)]
    try:
        par = parent(broker)
        before = par.get("before")
        assert isinstance(before, int), par
        # The qcluster process forked the Sentinel: with forkhooks it closed its connection first.
        parent_holds = not comes_true(lambda: not backend_exists(db, before), timeout=5)
        enqueue_via("q2", dsn, broker, env, "echo", tags)
        rows = collect(broker, N, worker, stop_after_bad=3 if case == "control" else None)
        worker_names = app_names(db)
        # systemd's stop: SIGTERM to every process. django-q2's Sentinel and its children die of it (their
        # SIGTERM is the default action) and the qcluster process then blocks for good in stop_event.set(),
        # waiting for the dead Sentinel to wake from its wait (upstream): the backends must be gone all the same.
        os.killpg(worker.pid, signal.SIGTERM)
        left = backends_left(db, timeout=5 if case == "control" else 10)
        exited = comes_true(lambda: worker.proc.poll() is not None, timeout=2 if case == "control" else 5)
    finally:
        worker.kill()
    results = tally(tags[: len(rows)] if case == "control" else tags, rows)
    par = parent(broker)
    per_child = per_child_backends(rows)
    record(
        "django-q2",
        f"cluster-{case}",
        results,
        parent_survived=par["survived"],
        parent_errors=len(par["errors"]),
        parent_holds_backend=parent_holds,
        errors=dict(results.errors.most_common(2)),
        parent_error=par["errors"][:1],
        backends_left=left,
        exited_after_sigterm=exited,
    )
    if case == "control":
        assert results.failed + results.wrong >= 3, (results.summary(), worker.log()[-3000:])
        assert parent_holds  # the children share it, and it stays the qcluster process's while it supervises
        return
    assert (results.failed, results.wrong) == (0, 0), (results.summary(), worker.log()[-3000:])
    assert not parent_holds, worker.log()[-3000:]
    assert par["errors"] == [], par  # the check at exit ran only if the qcluster process got past the upstream hang
    assert left == 0
    assert len(per_child) >= 2 and all(n <= 4 for n in per_child.values()), per_child  # pools kept across jobs
    owners = {(r["backend"], r["pid"]) for r in rows}
    assert len({b for b, _ in owners}) == len(owners), owners  # no backend serves two workers
    assert any(":django-q2-worker:" in n for n in worker_names), worker_names
    # The qcluster process before the Sentinel, the Sentinel before each of its 6 children.
    assert worker.log().count("forkhooks: django-q2 supervisor") >= 7, worker.log()[-3000:]


# (case, settings, env): psycopg2 cannot act on the timeout's SIGALRM before its query returns, so the worker
# is still in the query when the Sentinel kills it (psycopg 3 cancels by itself: django-q2's TimeoutException
# is a SystemExit, which psycopg 3 cancels on).
TIMEOUTS = [
    ("forkhooks.django-psycopg2", PSYCOPG2, {}),
    ("control-psycopg2", PSYCOPG2, {"FORKHOOKS_TEST_APP": "0"}),
]


@pytest.mark.e2e
@pytest.mark.parametrize(("case", "settings", "env"), TIMEOUTS, ids=[c[0] for c in TIMEOUTS])
def test_q2_timeout_kill_mid_query(
    case: str, settings: str, env: dict[str, str], dsn: str, db: psycopg.Connection, broker: Path, tmp_path: Path
) -> None:
    """A task past its 1 s timeout in pg_sleep(30): the Sentinel kills the worker and reincarnates it; the query
    is gone within 3 s of the kill."""
    env = env_for(FORKHOOKS_TEST_Q2_TIMEOUT="1", **env)
    worker = qcluster(dsn, broker, tmp_path, settings, env)
    slow_backend = 0
    try:
        enqueue_via("q2", dsn, broker, env, "slow", ["30"])
        poll(lambda: worker.alive() and client(broker).llen(jobs.EVENTS) > 0, timeout=30, what="the slow job's query")
        slow_backend = json.loads(client(broker).lindex(jobs.EVENTS, 0))["slow_backend"]
        poll(lambda: "after timeout" in worker.log(), timeout=30, what="the Sentinel killing the worker")
        still = still_running(db, slow_backend, timeout=3)
        code, stopped_in = stop_timed(worker, signal.SIGINT, timeout=30)
    finally:
        worker.kill()
        if slow_backend:  # never leave a 30 s query behind for the next test
            db.execute("SELECT pg_terminate_backend(%s)", [slow_backend])
    left = backends_left(db)
    record(
        "django-q2", f"timeout-{case}", tally([], []), query_left_running=still, backends_left=left, stop_s=stopped_in
    )
    if case.startswith("control"):
        assert still, "without forkhooks.django the killed worker's query ended anyway"
        return
    assert not still, worker.log()[-3000:]
    assert "cancelled 1 running query(ies) before it is killed" in worker.log(), worker.log()[-3000:]
    assert code is not None, "the stop hung: " + worker.log()[-3000:]
    assert left == 0


# (case, settings)
KILLED = [("forkhooks.django", WITH_APP), ("control", WITHOUT)]


@pytest.mark.e2e
@pytest.mark.parametrize(("case", "settings"), KILLED, ids=[c[0] for c in KILLED])
def test_q2_worker_killed_mid_query(
    case: str, settings: str, dsn: str, db: psycopg.Connection, broker: Path, tmp_path: Path
) -> None:
    """A worker SIGKILLed (the OOM killer) in pg_sleep(30): its query is gone within 3 s; the Sentinel reincarnates
    the worker; a Ctrl-C (SIGINT to the group) then stops the cluster with 0 backends left."""
    # The qcluster process holds a session only with forkhooks: without, the killed worker's query would be on it.
    env = env_for(**({} if case == "control" else {"FORKHOOKS_TEST_PARENT": "1"}))
    worker = qcluster(dsn, broker, tmp_path, settings, env)
    slow_backend = 0
    code = stopped_in = None
    try:
        enqueue_via("q2", dsn, broker, env, "slow", ["30"])
        poll(lambda: worker.alive() and client(broker).llen(jobs.EVENTS) > 0, timeout=30, what="the slow job's query")
        event = json.loads(client(broker).lindex(jobs.EVENTS, 0))
        slow_backend = event["slow_backend"]
        poll(lambda: slow_backend in running(db, "pg_sleep"), timeout=10, what="the job's pg_sleep running")
        os.kill(event["pid"], signal.SIGKILL)
        still = still_running(db, slow_backend, timeout=3)
        if case != "control":  # the control stops at its proof
            poll(lambda: client(broker).llen(READY) >= 5, timeout=20, what="the reincarnated worker")
            code, stopped_in = stop_timed(worker, signal.SIGINT, timeout=30)
    finally:
        worker.kill()
        if slow_backend:  # never leave a 30 s query behind for the next test
            db.execute("SELECT pg_terminate_backend(%s)", [slow_backend])
    left = backends_left(db)
    record(
        "django-q2", f"sigkill-{case}", tally([], []), query_left_running=still, backends_left=left, stop_s=stopped_in
    )
    if case == "control":
        assert still, "without forkhooks.django the killed worker's query ended anyway"
        return
    assert not still, worker.log()[-3000:]
    assert f"process {event['pid']} ended (exit code -9) without closing: ended 1 backend(s)" in worker.log()
    assert code is not None, "the stop hung: " + worker.log()[-3000:]
    assert left == 0
    par = parent(broker)
    assert par["errors"] == [] and "after" in par, par  # checked after a clean stop: never killed


# (case, settings)
STOPPED = [("forkhooks.django", WITH_APP), ("control", WITHOUT)]


@pytest.mark.e2e
@pytest.mark.parametrize(("case", "settings"), STOPPED, ids=[c[0] for c in STOPPED])
def test_q2_stopped_mid_query(
    case: str, settings: str, dsn: str, db: psycopg.Connection, broker: Path, tmp_path: Path
) -> None:
    """systemd's stop (SIGTERM to the group) while a worker is in pg_sleep(30): the worker cancels its query
    before it dies of the signal; without, the query runs on. 0 backends within 10 s either way of the
    qcluster process's upstream hang."""
    env = env_for()
    worker = qcluster(dsn, broker, tmp_path, settings, env)
    slow_backend = 0
    try:
        enqueue_via("q2", dsn, broker, env, "slow", ["30"])
        poll(lambda: worker.alive() and client(broker).llen(jobs.EVENTS) > 0, timeout=30, what="the slow job's query")
        slow_backend = json.loads(client(broker).lindex(jobs.EVENTS, 0))["slow_backend"]
        poll(lambda: slow_backend in running(db, "pg_sleep"), timeout=10, what="the job's pg_sleep running")
        os.killpg(worker.pid, signal.SIGTERM)
        still = still_running(db, slow_backend, timeout=3)
        left = backends_left(db, timeout=10 if not still else 0)
    finally:
        worker.kill()
        if slow_backend:  # never leave a 30 s query behind for the next test
            db.execute("SELECT pg_terminate_backend(%s)", [slow_backend])
    record("django-q2", f"stop-mid-query-{case}", tally([], []), query_left_running=still, backends_left=left)
    if case == "control":
        assert still, "without forkhooks.django the stop ended the query anyway"
        return
    assert not still, worker.log()[-3000:]
    assert left == 0
