"""Celery beat with django-celery-beat's DatabaseScheduler against PostgreSQL, Django's pool on (min 1, max 4).

`celery worker -B` forks beat as a process of its own (billiard) from the worker's main process, which
ran a start-up query first; `celery beat` runs the scheduler in its own process. The schedule is one
periodic task, `echo` every second, whose tag is its name: each run answers through PostgreSQL from a
pool process. Beat itself reads the schedule from the database and saves each task's run count.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path
from typing import Any

import psycopg
import pytest

from .harness import PYTHON, ROOT, child_env
from .jobrunners import WorkerProcess, backends_left, celery, client, comes_true, parent, tally
from .project import jobs
from .project.beat_schedule import NAME
from .record import record

# A runner behaves the same on every Python and Django here: run once in the matrix (py311).
pytestmark = pytest.mark.slow

# Not in the test extra (it requires Django < 6.1): the py311 session installs it (pyproject's test-once group).
pytest.importorskip("django_celery_beat")

WITH_APP = "tests.project.settings_beat"
WITHOUT = "tests.project.settings_beat_without"
SCHEDULER = ("--scheduler", "django_celery_beat.schedulers:DatabaseScheduler")
RUNS = 5  # periodic runs to wait for (one a second)


@pytest.fixture(scope="module")
def migrated(dsn: str) -> str:
    """django-celery-beat's tables, created once for this module."""
    env = child_env(dsn, DJANGO_SETTINGS_MODULE=WITHOUT)
    argv = [PYTHON, "-m", "django", "migrate", "django_celery_beat", "--noinput"]
    done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return dsn


@pytest.fixture
def broker(redis_socket: Path, migrated: str) -> Path:
    """The session's Redis emptied, and the schedule reset to the one periodic task (run count 0)."""
    client(redis_socket).flushall()
    env = child_env(migrated, DJANGO_SETTINGS_MODULE=WITHOUT)
    done = subprocess.run(
        [PYTHON, "-m", "tests.project.beat_schedule"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return redis_socket


def run_count(db: psycopg.Connection) -> int:
    """The periodic task's total_run_count as beat saved it."""
    row = db.execute("SELECT total_run_count FROM django_celery_beat_periodictask WHERE name = %s", [NAME]).fetchone()
    assert row is not None
    return int(row[0])


def beat_rows(sock: Path) -> list[dict[str, Any]]:
    """What each beat process reported of its own session (tests/project/jobs.beat_session)."""
    return [json.loads(x) for x in client(sock).lrange(jobs.BEAT, 0, -1)]


def answers(sock: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in client(sock).lrange(jobs.RESULTS, 0, -1)]


def sent(worker: WorkerProcess) -> int:
    """How many times beat sent the periodic task, by its own log."""
    return worker.log().count(f"Sending due task {NAME}")


BEAT_DIED = "ERROR/Beat] Process Beat"  # billiard's line when the embedded beat process dies of an exception


def measure(
    worker: WorkerProcess, sock: Path, db: psycopg.Connection, *, standalone: bool = False, control: bool = False
) -> dict[str, Any]:
    """Wait (bounded) for RUNS periodic runs, stop the group with SIGTERM, read what beat saved.

    A run is an answer from a pool process (`worker -B`), or a message beat sent (`celery beat`, no worker).
    A control stops at its first proof: the beat process died.
    """

    def ran() -> bool:
        if control and BEAT_DIED in worker.log():
            return True
        return worker.alive() and (sent(worker) if standalone else len(answers(sock))) >= RUNS

    try:
        got = comes_true(ran, timeout=30)
        if standalone:
            code = worker.stop()
        else:
            # Celery's warm shutdown (systemd's KillMode=mixed): SIGTERM to the main process only. To the
            # whole group it would also kill the pool process running the last periodic task mid-task (Celery
            # resets SIGTERM to its default action in pool processes: WorkerLostError), with or without forkhooks.
            os.kill(worker.pid, signal.SIGTERM)
            code = worker.proc.wait(30)
    except BaseException:
        worker.kill()
        raise
    worker.kill()  # SIGKILL whatever is left of the group (nothing, after a clean stop)
    rows = answers(sock)
    log = worker.log()
    return {
        "ran": got,
        "results": tally([NAME] * len(rows), rows),
        "rows": rows,
        "sent": sent(worker),
        "queued": client(sock).llen("celery"),
        "saved": run_count(db),
        "beat": beat_rows(sock),
        "parent": parent(sock),
        "left": backends_left(db),
        "code": code,
        "log": log,
    }


# (case, settings, extra `celery worker` arguments)
EMBEDDED = [
    ("forkhooks.django", WITH_APP, ()),
    ("-I forkhooks.celery", WITHOUT, ("-I", "forkhooks.celery")),
    ("control", WITHOUT, ()),
]


@pytest.mark.e2e
@pytest.mark.parametrize(("case", "settings", "extra"), EMBEDDED, ids=[c[0] for c in EMBEDDED])
def test_worker_with_embedded_beat(
    case: str, settings: str, extra: tuple[str, ...], dsn: str, db: psycopg.Connection, broker: Path, tmp_path: Path
) -> None:
    """`celery worker -B`: the forked beat process has a session of its own, runs the schedule and saves it."""
    env = {"FORKHOOKS_TEST_PARENT": "1", "FORKHOOKS_TEST_BEAT": "1"}
    worker = celery(dsn, broker, tmp_path, settings=settings, env=env, extra=("-B", *SCHEDULER, *extra))
    control = case == "control"
    out = measure(worker, broker, db, control=control)
    results, par, beat = out["results"], out["parent"], out["beat"]
    record(
        "celery-beat",
        f"worker -B, {case}",
        results,
        sent=out["sent"],
        saved=out["saved"],
        beat_shares_parent=[b.get("backend") for b in beat] == [par.get("before")],
        beat_errors=sum("error" in b for b in beat),
        parent_errors=len(par["errors"]),
        backends_left=out["left"],
    )
    log = out["log"]
    assert out["code"] == 0, log[-3000:]
    assert out["left"] == 0
    if control:
        # billiard's embedded beat closes every fd but stdio and the log's (close_open_fds): the pool it
        # inherited holds the main process's connection on a closed descriptor, and the scheduler's first
        # query fails. Beat dies at start, the worker runs on without it: no periodic task ever runs.
        assert BEAT_DIED in log, log[-3000:]
        assert "Bad file descriptor" in log or "connection socket closed" in log, log[-3000:]
        assert (out["sent"], len(out["rows"]), out["saved"]) == (0, 0, 0), (out["sent"], out["saved"])
        return
    assert out["ran"], log[-3000:]
    assert (results.failed, results.wrong) == (0, 0), results.summary()
    assert len(out["rows"]) >= RUNS
    # Beat reserves (counts) a run just before it logs the send: a stop between the two saves one more.
    assert out["saved"] in (out["sent"], out["sent"] + 1), (out["saved"], out["sent"])
    assert len(beat) == 1 and "backend" in beat[0], beat  # the scheduler's session works
    assert beat[0]["backend"] != par["before"], (beat, par)  # ... and is its own, not the main process's
    assert par["errors"] == [], par
    assert "Traceback" not in log, log[-3000:]


# (case, settings, env): `celery beat` forks nothing; the scheduler runs in the process that set Django up.
STANDALONE = [
    ("forkhooks.django", WITH_APP, {}),
    ("without", WITHOUT, {}),
]


@pytest.mark.e2e
@pytest.mark.parametrize(("case", "settings", "env"), STANDALONE, ids=[c[0] for c in STANDALONE])
def test_standalone_beat(
    case: str, settings: str, env: dict[str, str], dsn: str, db: psycopg.Connection, broker: Path, tmp_path: Path
) -> None:
    """`celery beat`: sends the schedule and saves every run, the same with and without forkhooks."""
    argv = [PYTHON, "-m", "celery", "-A", "tests.project.celeryapp", "beat", *SCHEDULER, "-l", "info"]
    argv += ["-s", str(tmp_path / "schedule")]  # unused by the DatabaseScheduler; never the checkout
    beat = WorkerProcess(
        argv, dsn, broker, tmp_path, {"DJANGO_SETTINGS_MODULE": settings, "FORKHOOKS_TEST_BEAT": "1", **env}
    )
    out = measure(beat, broker, db, standalone=True)
    rows = out["beat"]
    record(
        "celery-beat",
        f"celery beat, {case}",
        tally([], []),
        sent=out["sent"],
        queued=out["queued"],
        saved=out["saved"],
        beat_errors=sum("error" in b for b in rows),
        backends_left=out["left"],
    )
    log = out["log"]
    assert out["code"] == 0, log[-3000:]
    assert out["ran"], log[-3000:]
    # Beat reserves (counts) a run just before it logs the send, and publishes just after: a stop between them
    # saves one more than it logged, or publishes one less.
    assert out["saved"] in (out["sent"], out["sent"] + 1), (out["saved"], out["sent"])
    assert out["queued"] in (out["sent"], out["sent"] - 1), (out["queued"], out["sent"])
    assert len(rows) == 1 and "backend" in rows[0], rows
    assert out["left"] == 0
    assert "Traceback" not in log, log[-3000:]
