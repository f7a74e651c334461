"""Real Huey consumers (``python -m django run_huey``, RedisHuey on the test Redis) against PostgreSQL.

Django's pool is on (min 1, max 4). The consumer holds a pooled connection
when it starts, as a project's start-up check does, and checks its session
again once its workers are gone. The only forkhooks line is
``"forkhooks.django"`` in INSTALLED_APPS.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
from pathlib import Path
from typing import Any

import psycopg
import pytest

from .harness import PYTHON, ROOT, app_backends, child_env
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
READY = "forkhooks:ready"  # tests/project/runnerapp: one row per worker started
N = 200


@pytest.fixture
def broker(redis_socket: Path) -> Path:
    """The session's Redis, emptied: no job or answer of an earlier test is left."""
    client(redis_socket).flushall()
    return redis_socket


def env_for(sock: Path, **extra: str) -> dict[str, str]:
    """The test's own queue: Huey's keys never meet another test's."""
    return {"FORKHOOKS_TEST_QUEUE": f"q{secrets.token_hex(4)}", **extra}


def run_huey(
    dsn: str, sock: Path, tmp: Path, settings: str, env: dict[str, str], *, kind: str = "process", workers: int = 4
) -> WorkerProcess:
    """`python -m django run_huey -k KIND -w N`, waiting (bounded) until its workers started."""
    argv = [PYTHON, "-m", "django", "run_huey", "-k", kind, "-w", str(workers)]
    if kind == "greenlet":  # gevent needs its monkey-patching first, as a project's manage.py does
        argv = [PYTHON, "-m", "tests.project.manage_gevent", "run_huey", "-k", kind, "-w", str(workers)]
    worker = WorkerProcess(argv, dsn, sock, tmp, {"DJANGO_SETTINGS_MODULE": settings, **env})
    try:
        poll(lambda: worker.alive() and client(sock).llen(READY) >= workers, timeout=60, what="huey workers started")
    except BaseException:
        worker.kill()
        raise
    return worker


# (case, settings)
CASES = [("forkhooks.django", WITH_APP), ("control", WITHOUT)]


@pytest.mark.e2e
@pytest.mark.parametrize(("case", "settings"), CASES, ids=[c[0] for c in CASES])
def test_huey_process_workers(
    case: str, settings: str, dsn: str, db: psycopg.Connection, broker: Path, tmp_path: Path
) -> None:
    """-k process -w 4, 200 jobs: every answer right, the consumer's session never killed and not held, 0 backends
    after SIGTERM to the group (systemd). The control (no forkhooks.django) stops at its first 3 bad answers."""
    env = env_for(broker, FORKHOOKS_TEST_PARENT="1")
    worker = run_huey(dsn, broker, tmp_path, settings, env)
    tags = [f"{i}-{secrets.token_hex(6)}" for i in range(N)]
    stopped_in: float | None = None
    try:
        par = parent(broker)
        before = par.get("before")
        assert isinstance(before, int), par
        # The consumer forked its workers: with forkhooks it closed its connection first.
        parent_holds = not comes_true(lambda: not backend_exists(db, before), timeout=5)
        enqueue_via("huey", dsn, broker, env, "echo", tags)
        rows = collect(broker, N, worker, stop_after_bad=3 if case == "control" else None)
        worker_names = app_names(db)
        code, stopped_in = stop_timed(worker, signal.SIGTERM, timeout=10 if case == "control" else 30)
    finally:
        worker.kill()
    results = tally(tags[: len(rows)] if case == "control" else tags, rows)
    par = parent(broker)
    left = backends_left(db)
    per_child = per_child_backends(rows)
    record(
        "huey",
        f"process-{case}",
        results,
        parent_survived=par["survived"],
        parent_errors=len(par["errors"]),
        parent_holds_backend=parent_holds,
        errors=dict(results.errors.most_common(2)),
        parent_error=par["errors"][:1],
        backends_left=left,
        stop_s=stopped_in,
    )
    if case == "control":
        assert results.failed + results.wrong >= 3, (results.summary(), worker.log()[-3000:])
        assert parent_holds  # the workers share it, and it stays the consumer's while it supervises
        return
    assert (results.failed, results.wrong) == (0, 0), (results.summary(), worker.log()[-3000:])
    assert code == 0, worker.log()[-3000:]
    assert not parent_holds, worker.log()[-3000:]
    assert par["errors"] == [], par
    assert left == 0
    assert len(per_child) >= 2 and all(n <= 4 for n in per_child.values()), per_child  # pools kept across jobs
    owners = {(r["backend"], r["pid"]) for r in rows}
    assert len({b for b, _ in owners}) == len(owners), owners  # no backend serves two workers
    assert any(":huey-worker:" in n for n in worker_names), worker_names
    assert worker.log().count("forkhooks: huey consumer") >= 5, worker.log()[-3000:]  # 4 workers + the scheduler


# (case, settings)
KILLED = [("forkhooks.django", WITH_APP), ("control", WITHOUT)]


@pytest.mark.e2e
@pytest.mark.parametrize(("case", "settings"), KILLED, ids=[c[0] for c in KILLED])
def test_huey_worker_killed_mid_query(
    case: str, settings: str, dsn: str, db: psycopg.Connection, broker: Path, tmp_path: Path
) -> None:
    """A process worker SIGKILLed (the OOM killer) in pg_sleep(30): its query is gone within 3 s; Huey replaces
    the worker; a Ctrl-C (SIGINT to the group) then stops the consumer with 0 backends left."""
    # The consumer holds a session only with forkhooks: without, the killed worker's query would be on it.
    env = env_for(broker, **({} if case == "control" else {"FORKHOOKS_TEST_PARENT": "1"}))
    worker = run_huey(dsn, broker, tmp_path, settings, env)
    slow_backend = 0
    code = stopped_in = None
    try:
        enqueue_via("huey", dsn, broker, env, "slow", ["30"])
        poll(lambda: worker.alive() and client(broker).llen(jobs.EVENTS) > 0, timeout=30, what="the slow job's query")
        event = json.loads(client(broker).lindex(jobs.EVENTS, 0))
        slow_backend = event["slow_backend"]
        poll(lambda: slow_backend in running(db, "pg_sleep"), timeout=10, what="the job's pg_sleep running")
        os.kill(event["pid"], signal.SIGKILL)
        still = still_running(db, slow_backend, timeout=3)
        if case != "control":  # the control stops at its proof
            # Huey's health check (every 10 s) starts a new worker in its place.
            poll(lambda: client(broker).llen(READY) >= 5, timeout=20, what="the replacement worker")
            code, stopped_in = stop_timed(worker, signal.SIGINT, timeout=30)
    finally:
        worker.kill()
        if slow_backend:  # never leave a 30 s query behind for the next test
            db.execute("SELECT pg_terminate_backend(%s)", [slow_backend])
    left = backends_left(db)
    record("huey", f"sigkill-{case}", tally([], []), query_left_running=still, backends_left=left, stop_s=stopped_in)
    if case == "control":
        assert still, "without forkhooks.django the killed worker's query ended anyway"
        return
    assert not still, worker.log()[-3000:]
    assert f"huey process {event['pid']} died (signal 9) without closing: ended 1 backend(s)" in worker.log()
    assert code == 0, worker.log()[-3000:]
    assert left == 0
    par = parent(broker)
    assert par["errors"] == [] and "after" in par, par  # checked after a clean stop: never killed


PSYCOPG2 = "tests.project.settings_runners_psycopg2"
# (case, settings, env): psycopg2, whose worker cannot act on Huey's SIGTERM (KeyboardInterrupt) before its query
# returns; psycopg 3 cancels by itself on KeyboardInterrupt.
STOPPED = [
    ("forkhooks.django-psycopg2", PSYCOPG2, {}),
    ("control-psycopg2", PSYCOPG2, {"FORKHOOKS_TEST_APP": "0"}),
]


@pytest.mark.e2e
@pytest.mark.parametrize(("case", "settings", "env"), STOPPED, ids=[c[0] for c in STOPPED])
def test_huey_stopped_mid_query(
    case: str, settings: str, env: dict[str, str], dsn: str, db: psycopg.Connection, broker: Path, tmp_path: Path
) -> None:
    """systemd's stop (SIGTERM to the group) while a worker is in pg_sleep(30): the consumer cancels the query
    before it interrupts its workers, and exits; without, the query runs on and the consumer waits for it."""
    env = env_for(broker, **env)
    worker = run_huey(dsn, broker, tmp_path, settings, env)
    slow_backend = 0
    try:
        enqueue_via("huey", dsn, broker, env, "slow", ["30"])
        poll(lambda: worker.alive() and client(broker).llen(jobs.EVENTS) > 0, timeout=30, what="the slow job's query")
        slow_backend = json.loads(client(broker).lindex(jobs.EVENTS, 0))["slow_backend"]
        poll(lambda: slow_backend in running(db, "pg_sleep"), timeout=10, what="the job's pg_sleep running")
        os.killpg(worker.pid, signal.SIGTERM)
        still = still_running(db, slow_backend, timeout=3)
        exited = comes_true(lambda: worker.proc.poll() is not None, timeout=10 if not still else 2)
    finally:
        worker.kill()
        if slow_backend:  # never leave a 30 s query behind for the next test
            db.execute("SELECT pg_terminate_backend(%s)", [slow_backend])
    left = backends_left(db)
    record("huey", f"stop-mid-query-{case}", tally([], []), query_left_running=still, exited=exited, backends_left=left)
    if case.startswith("control"):
        assert still and not exited, "without forkhooks.django the stop ended the query anyway"
        return
    assert not still, worker.log()[-3000:]
    assert exited and worker.proc.returncode == 0, worker.log()[-3000:]
    assert "cancelled 1 running query(ies)" in worker.log(), worker.log()[-3000:]
    assert left == 0


# (worker type, case, settings): nothing forks, so nothing is shared; forkhooks must change nothing there.
UNFORKED = [
    ("thread", "forkhooks.django", WITH_APP),
    ("thread", "without", WITHOUT),
    ("greenlet", "forkhooks.django", WITH_APP),
    ("greenlet", "without", WITHOUT),
]


@pytest.mark.e2e
@pytest.mark.parametrize(("kind", "case", "settings"), UNFORKED, ids=[f"{k}-{c}" for k, c, _ in UNFORKED])
def test_huey_thread_and_greenlet_workers(
    kind: str, case: str, settings: str, dsn: str, db: psycopg.Connection, broker: Path, tmp_path: Path
) -> None:
    """-k thread and -k greenlet fork nothing: 50 jobs right with and without forkhooks, 0 backends after SIGTERM."""
    env = env_for(broker, FORKHOOKS_TEST_PARENT="1")
    worker = run_huey(dsn, broker, tmp_path, settings, env, kind=kind)
    tags = [f"{i}-{secrets.token_hex(6)}" for i in range(50)]
    try:
        enqueue_via("huey", dsn, broker, env, "echo", tags)
        rows = collect(broker, len(tags), worker)
        code, stopped_in = stop_timed(worker, signal.SIGTERM, timeout=30)
    finally:
        worker.kill()
    results = tally(tags, rows)
    par = parent(broker)
    left = backends_left(db)
    extra: dict[str, Any] = {"parent_errors": len(par["errors"]), "backends_left": left, "stop_s": stopped_in}
    record("huey", f"{kind}-{case}", results, **extra)
    assert (results.failed, results.wrong) == (0, 0), (results.summary(), worker.log()[-3000:])
    assert code == 0, worker.log()[-3000:]
    assert par["errors"] == [], par  # nothing forked: the consumer's session is never touched by another process
    assert left == 0
    assert "forkhooks: huey" not in worker.log(), worker.log()[-3000:]
    assert app_backends(db) == 0


def test_runner_detection() -> None:
    """forkhooks.django loads a runner's adapter for that runner's command only, and only with its app installed."""
    code = (
        "import django, sys; django.setup()\n"
        "from forkhooks.django.apps import runner_command as r\n"
        "cs = ('run_huey', 'qcluster', 'rqworker-pool', 'runserver', '--help')\n"
        "print([r(['manage.py', c]) for c in cs], r(['manage.py']), 'forkhooks._adapters.huey' in sys.modules)\n"
    )
    out = {}
    for settings in (WITH_APP, "tests.project.settings_jobs"):  # the second has django-rq, neither Huey nor django-q2
        env = child_env("", DJANGO_SETTINGS_MODULE=settings)
        done = subprocess.run([PYTHON, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr[-2000:]
        out[settings] = done.stdout.strip()
    assert out[WITH_APP] == "['run_huey', 'qcluster', None, None, None] None False", out
    assert out["tests.project.settings_jobs"] == "[None, None, 'rqworker-pool', None, None] None False", out
