"""Real RQ workers (a work horse forked per job, django-rq's rqworker) against PostgreSQL and Redis.

The worker's main process holds a pooled connection when it starts working and
checks its session when the queue is drained. Among the jobs, one calls the
blog post's ``connection.close()`` first, and one overruns its job timeout
(1 s) in ``pg_sleep(30)``.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest
import rq

from .harness import PYTHON
from .jobrunners import (
    WITH_APP,
    WITHOUT,
    WorkerProcess,
    backends_left,
    client,
    collect,
    end_sleeps,
    kill_mid_query,
    parent,
    poll,
    running,
    sessions,
    still_running,
    tally,
)
from .project import jobs
from .record import record

N = 100  # echo jobs (+ the naive close and the slow job)

# (case, settings, worker class)
CASES = [
    ("forkhooks.rq", WITHOUT, "tests.project.rqworkers.ForkhooksProbe"),
    ("forkhooks.django-only", WITH_APP, "tests.project.rqworkers.PlainProbe"),
    ("control", WITHOUT, "tests.project.rqworkers.PlainProbe"),
]


@pytest.fixture
def broker(redis_socket: Path) -> Path:
    """The session's Redis, emptied: no job or answer of an earlier test is left."""
    client(redis_socket).flushall()
    return redis_socket


def enqueue(sock: Path, n: int, slow: float) -> list[str]:
    """n echo jobs, a naive close after the first fifth and a slow job in the middle; the tags that must come back."""
    queue = rq.Queue("default", connection=client(sock))
    tags = [f"{i}-{secrets.token_hex(6)}" for i in range(n + 1)]
    for i, tag in enumerate(tags):
        if i == n // 5:
            queue.enqueue(jobs.naive_close, tag)
        else:
            queue.enqueue(jobs.echo, tag)
        if i == n // 2:
            queue.enqueue(jobs.slow, slow, job_timeout=1)
    return tags


def rqworker(dsn: str, sock: Path, tmp: Path, settings: str, worker_class: str, *, burst: bool) -> WorkerProcess:
    """django-rq's `rqworker --worker-class ...` (one worker, a horse per job)."""
    argv = [PYTHON, "-m", "django", "rqworker", "--worker-class", worker_class, "default"]
    return WorkerProcess([*argv, *(["--burst"] if burst else [])], dsn, sock, tmp, {"DJANGO_SETTINGS_MODULE": settings})


@pytest.mark.e2e
@pytest.mark.parametrize(("case", "settings", "worker_class"), CASES, ids=[c[0] for c in CASES])
def test_rq_horses(
    case: str, settings: str, worker_class: str, dsn: str, db: psycopg.Connection, broker: Path, tmp_path: Path
) -> None:
    """forkhooks.rq: every job right, each horse on its own backend, a timed-out job's query cancelled."""
    # The control's slow query ends 2 s after its job timed out: the next horses then read its rows and
    # each other's. Elsewhere it would run 30 s: still running after the queue is drained means never cancelled.
    tags = enqueue(broker, N, 3 if case == "control" else 30)
    start = sessions(db)
    worker = rqworker(dsn, broker, tmp_path, settings, worker_class, burst=case != "control")
    slow_backend = 0
    try:
        # The control stops at its first proof: 3 jobs failed or answered with another job's row.
        rows = collect(broker, len(tags), worker, stop_after_bad=3 if case == "control" else None)
        events = [json.loads(x) for x in client(broker).lrange(jobs.EVENTS, 0, -1)]
        slow_backend = events[0]["slow_backend"] if events else 0
        left_running = bool(slow_backend) and slow_backend in running(db, "pg_sleep")
        if case == "control":
            worker.stop()
        else:
            assert worker.proc.wait(60) == 0, worker.log()[-3000:]  # --burst: it exits once the queue is drained
    finally:
        worker.kill()
        if slow_backend:  # never leave a 30 s query behind for the next test
            db.execute("SELECT pg_terminate_backend(%s)", [slow_backend])
    results = tally(tags[: len(rows)] if case == "control" else tags, rows)
    par = parent(broker)
    left = backends_left(db)
    answered = [r for r in rows if "backend" in r]
    extra: dict[str, Any] = {
        "conns_per_100": round(100 * (sessions(db) - start) / max(len(rows), 1), 1),
        "parent_survived": par["survived"],
        "parent_errors": len(par["errors"]),
        "backends_left": left,
        "query_left_running": left_running,
        "job_backends": len({r["backend"] for r in answered}),
    }
    record("rq", case, results, **extra)
    if case == "control":
        assert results.failed + results.wrong >= 3 or par["errors"] or extra["job_backends"] == 1, (
            results.summary(),
            par,
            extra,
        )
        return
    assert (results.failed, results.wrong) == (0, 0), (results.summary(), worker.log()[-3000:])
    assert par["errors"] == [], par
    assert left == 0
    assert extra["job_backends"] == len(answered), extra  # each horse its own backend, never the parent's
    if case == "forkhooks.django-only":
        assert par["survived"], par
        assert left_running, "the timed-out job's query ends with forkhooks.django alone"
        return
    assert not left_running, worker.log()[-3000:]
    assert "forkhooks: rq horse" in worker.log(), worker.log()[-3000:]


@pytest.mark.e2e
def test_rq_cli_worker_class(dsn: str, db: psycopg.Connection, broker: Path, tmp_path: Path) -> None:
    """`rq worker -w forkhooks.rq.Worker` (no django-rq): every job right, the timed-out job's query cancelled."""
    tags = enqueue(broker, 20, 30)
    argv = [PYTHON, "-c", "from rq.cli import main; main()", "worker", "-w", "forkhooks.rq.Worker"]
    argv += ["--url", f"unix://{broker}", "--burst", "default"]
    worker = WorkerProcess(argv, dsn, broker, tmp_path, {"DJANGO_SETTINGS_MODULE": WITHOUT})
    slow_backend = 0
    try:
        rows = collect(broker, len(tags), worker)
        events = [json.loads(x) for x in client(broker).lrange(jobs.EVENTS, 0, -1)]
        slow_backend = events[0]["slow_backend"] if events else 0
        left_running = bool(slow_backend) and slow_backend in running(db, "pg_sleep")
        assert worker.proc.wait(60) == 0, worker.log()[-3000:]
    finally:
        worker.kill()
        if slow_backend:
            db.execute("SELECT pg_terminate_backend(%s)", [slow_backend])
    results = tally(tags, rows)
    left = backends_left(db)
    record("rq", "rq-cli-forkhooks.rq.Worker", results, query_left_running=left_running, backends_left=left)
    assert (results.failed, results.wrong) == (0, 0), results.summary()
    assert slow_backend and not left_running, worker.log()[-3000:]
    assert left == 0


# (how the worker is stopped mid-job, worker class)
STOPS = [
    ("ctrl-c-twice", "forkhooks.rq.Worker"),
    ("ctrl-c-twice", "rq.worker.Worker"),
    ("systemd", "forkhooks.rq.Worker"),
    ("systemd", "rq.worker.Worker"),
]


@pytest.mark.e2e
@pytest.mark.parametrize(("stop", "worker_class"), STOPS, ids=[f"{s}-{w}" for s, w in STOPS])
def test_rq_stopped_mid_query(
    stop: str, worker_class: str, dsn: str, db: psycopg.Connection, broker: Path, tmp_path: Path
) -> None:
    """A worker stopped while its horse is in pg_sleep(30): with forkhooks.rq the query does not run on.

    ctrl-c-twice: SIGINT to the worker's process group twice, as a terminal does (the horse has a group of its
    own, so RQ's cold shutdown SIGKILLs it). systemd: SIGTERM to every process of the service (KillMode=
    control-group), the horse included.
    """
    queue = rq.Queue("default", connection=client(broker))
    queue.enqueue(jobs.slow, 30, job_timeout=120)
    worker = rqworker(dsn, broker, tmp_path, WITHOUT, worker_class, burst=False)
    slow_backend = 0
    try:
        poll(lambda: worker.alive() and client(broker).llen(jobs.EVENTS) > 0, timeout=60, what="the slow job's query")
        event = json.loads(client(broker).lindex(jobs.EVENTS, 0))
        slow_backend, horse = event["slow_backend"], event["pid"]
        if stop == "ctrl-c-twice":
            os.killpg(worker.pid, signal.SIGINT)  # warm shutdown: RQ waits for the horse
            time.sleep(1.1)  # RQ ignores a second signal within 1 s of the first (a pool's duplicate)
            os.killpg(worker.pid, signal.SIGINT)  # cold shutdown: RQ SIGKILLs the horse
        else:
            os.killpg(worker.pid, signal.SIGTERM)
            os.kill(horse, signal.SIGTERM)
        code = worker.proc.wait(30)
        still = still_running(db, slow_backend)
    finally:
        worker.kill()
        if slow_backend:
            db.execute("SELECT pg_terminate_backend(%s)", [slow_backend])
    record("rq", f"stop-{stop}-{worker_class}", tally([], []), query_left_running=still)
    assert code is not None, worker.log()[-3000:]
    if worker_class == "rq.worker.Worker":
        assert still, "without forkhooks the killed horse's query ended anyway"
    else:
        assert not still, worker.log()[-3000:]
        done_by = "cancelled 1 running query" if stop == "ctrl-c-twice" else "forkhooks: rq horse"
        assert done_by in worker.log(), worker.log()[-3000:]


@pytest.mark.e2e
@pytest.mark.parametrize("worker_class", ["forkhooks.rq.Worker", "rq.worker.Worker"])
def test_horse_killed_mid_query_leaves_no_query_running(
    worker_class: str, dsn: str, db: psycopg.Connection, broker: Path, tmp_path: Path
) -> None:
    """A horse SIGKILLed (the OOM killer, kill -9) in pg_sleep(30): with forkhooks.rq its query is gone within 3 s."""
    queue = rq.Queue("default", connection=client(broker))
    queue.enqueue(jobs.slow, 30, job_timeout=120)
    worker = rqworker(dsn, broker, tmp_path, WITHOUT, worker_class, burst=False)
    try:
        _, horse, still = kill_mid_query(db, broker, worker)
        code = worker.stop()
    finally:
        worker.kill()
        end_sleeps(db)
    record("rq", f"sigkill-{worker_class}", tally([], []), query_left_running=still)
    assert code is not None, worker.log()[-3000:]
    if worker_class == "rq.worker.Worker":
        assert still, "without forkhooks the killed horse's query ended anyway"
    else:
        assert not still, worker.log()[-3000:]
        assert f"horse {horse} died without closing: ended 1 backend(s)" in worker.log(), worker.log()[-3000:]
