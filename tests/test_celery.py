"""Real Celery workers (prefork, 4 processes, Redis broker) against PostgreSQL, Django's pool on (min 1, max 4).

The worker's main process holds a pooled connection at fork, as a project's
start-up check does, and checks its session again at shutdown.
"""

from __future__ import annotations

import json
import secrets
from pathlib import Path

import psycopg
import pytest

from .jobrunners import (
    WITH_APP,
    WITHOUT,
    backends_left,
    celery,
    client,
    collect,
    end_sleeps,
    kill_mid_query,
    parent,
    per_child_backends,
    poll,
    sessions,
    still_running,
    tally,
)
from .project import jobs
from .record import record

MAX_SIZE = 4  # settings_jobs' pool max_size

# (case, settings, env, tasks)
CASES = [
    ("forkhooks.celery", WITHOUT, {"FORKHOOKS_TEST_CELERY": "1"}, 500),
    ("forkhooks.celery-replacements", WITHOUT, {"FORKHOOKS_TEST_CELERY": "1", "FORKHOOKS_TEST_MAX_TASKS": "20"}, 200),
    ("forkhooks.django-only", WITH_APP, {}, 100),
    ("control", WITHOUT, {}, 100),
    # An app whose code is not yours: Celery's own -I (--include) imports forkhooks.celery in the worker.
    ("forkhooks.celery-via-include", WITHOUT, {}, 200),
]
# Extra `celery worker` arguments per case.
ARGS = {"forkhooks.celery-via-include": ("-I", "forkhooks.celery")}


def tags(n: int) -> list[str]:
    return [f"{i}-{secrets.token_hex(6)}" for i in range(n)]


@pytest.fixture
def broker(redis_socket: Path) -> Path:
    """The session's Redis, emptied: no task or answer of an earlier test is left."""
    client(redis_socket).flushall()
    return redis_socket


def run(
    dsn: str,
    sock: Path,
    tmp: Path,
    db: psycopg.Connection,
    settings: str,
    env: dict[str, str],
    n: int,
    extra: tuple[str, ...] = (),
) -> dict:
    """Start a worker, send n echo tasks, collect, stop it with SIGTERM to its group; return what was measured."""
    from celery import Celery

    app = Celery("sender", broker=f"redis+socket://{sock}", set_as_current=False)
    start = sessions(db)
    worker = celery(dsn, sock, tmp, settings=settings, env={"FORKHOOKS_TEST_PARENT": "1", **env}, extra=extra)
    sent = tags(n)
    try:
        for tag in sent:
            app.send_task("echo", [tag])
        rows = collect(sock, n, worker)
        code = worker.stop()
    except BaseException:
        app.close()
        worker.kill()
        raise
    app.close()
    left = backends_left(db)
    opened = sessions(db) - start
    return {
        "results": tally(sent, rows),
        "rows": rows,
        "parent": parent(sock),
        "per_100": round(100 * opened / n, 1),
        "left": left,
        "code": code,
        "log": worker.log(),
    }


@pytest.mark.e2e
@pytest.mark.parametrize(("case", "settings", "env", "n"), CASES, ids=[c[0] for c in CASES])
def test_celery_prefork(
    case: str,
    settings: str,
    env: dict[str, str],
    n: int,
    dsn: str,
    db: psycopg.Connection,
    broker: Path,
    tmp_path: Path,
) -> None:
    """forkhooks.celery: every task right, the parent closes before each fork, pools kept across tasks."""
    out = run(dsn, broker, tmp_path, db, settings, env, n, ARGS.get(case, ()))
    results, par = out["results"], out["parent"]
    per_child = per_child_backends(out["rows"])
    record(
        "celery",
        case,
        results,
        conns_per_100=out["per_100"],
        parent_survived=par["survived"],
        parent_errors=len(par["errors"]),
        backends_left=out["left"],
        max_backends_per_child=max(per_child.values(), default=0),
    )
    assert out["code"] == 0, out["log"][-3000:]
    if case == "control":
        # Celery's fixup closes the inherited pool in each child: Terminate goes down the parent's idle connection.
        assert par["errors"], (par, out["log"][-3000:])
        assert "closed" in par["errors"][0] or "terminat" in par["errors"][0], par
        assert out["per_100"] >= 100, out["per_100"]  # the pool is rebuilt for every task
        return
    assert (results.failed, results.wrong) == (0, 0), results.summary()
    assert par["errors"] == [], par
    assert out["left"] == 0
    if case == "forkhooks.django-only":
        assert par["survived"], par  # the at-fork discard leaves the parent's socket alone
        assert out["per_100"] >= 100, out["per_100"]  # ... but Celery still closes the pools after every task
        return
    # forkhooks.celery: the main process closed its connection before forking (no error, a new session later).
    assert out["log"].count("forkhooks: celery main") >= 4, out["log"][-3000:]
    assert all(count <= MAX_SIZE for count in per_child.values()), per_child
    if "replacements" not in case:
        assert len(per_child) >= 2, per_child  # usually all 4; one that starts late on a busy machine may idle
        # 4 processes x at most max_size, plus the main process's two sessions: nothing per task.
        assert out["per_100"] * n / 100 <= 4 * MAX_SIZE + 2, out["per_100"]


PSYCOPG2 = "tests.project.settings_jobs_psycopg2"
# psycopg 3 notices SIGTERM within its 0.1 s poll interval and cancels by itself, sometimes before billiard's
# SIGKILL 0.1 s later: its control would prove nothing reliably. psycopg2 never gets there: the control is certain.
TIME_LIMIT = [
    ("forkhooks.celery", WITHOUT, {"FORKHOOKS_TEST_CELERY": "1"}),
    ("forkhooks.celery-psycopg2", PSYCOPG2, {"FORKHOOKS_TEST_CELERY": "1"}),
    ("control-psycopg2", PSYCOPG2, {}),
]


@pytest.mark.e2e
@pytest.mark.parametrize(("case", "settings", "env"), TIME_LIMIT, ids=[c[0] for c in TIME_LIMIT])
def test_hard_time_limit_leaves_no_query_running(
    case: str, settings: str, env: dict[str, str], dsn: str, db: psycopg.Connection, broker: Path, tmp_path: Path
) -> None:
    """A task killed by its hard time limit (1 s) mid-query: its pg_sleep(30) does not go on running on the server."""
    from celery import Celery

    worker = celery(dsn, broker, tmp_path, settings=settings, env=env)
    app = Celery("sender", broker=f"redis+socket://{broker}", set_as_current=False)
    r = client(broker)
    slow_backend = 0
    try:
        app.send_task("slow", [30])
        poll(lambda: r.llen(jobs.EVENTS) > 0, timeout=30, what="the slow task's query started")
        slow_backend = json.loads(r.lindex(jobs.EVENTS, 0))["slow_backend"]
        poll(lambda: "Hard time limit" in worker.log(), timeout=30, what="the hard time limit")
        # Well under the query's 30 s: long enough for a cancel, far too short for the query to end by itself.
        still = still_running(db, slow_backend)
        code = worker.stop()
    finally:
        app.close()
        worker.kill()
        if slow_backend:  # never leave a 30 s query behind for the next test
            db.execute("SELECT pg_terminate_backend(%s)", [slow_backend])
    record("celery", f"time-limit-{case}", tally([], []), query_left_running=still)
    assert code == 0, worker.log()[-3000:]
    if case.startswith("control"):
        assert still, "without forkhooks.celery the killed task's query ended anyway"
    else:
        assert not still, worker.log()[-3000:]
        assert "cancelled 1 running query" in worker.log(), worker.log()[-3000:]


@pytest.mark.e2e
@pytest.mark.parametrize("case", ["forkhooks.celery", "without"])
def test_solo_pool_works_as_without_forkhooks(
    case: str, dsn: str, db: psycopg.Connection, broker: Path, tmp_path: Path
) -> None:
    """-P solo forks nothing: forkhooks.celery closes, discards and warms nothing; Celery keeps the pool as it does."""
    from celery import Celery

    env = {"FORKHOOKS_TEST_CELERY": "1"} if case == "forkhooks.celery" else {}
    start = sessions(db)
    worker = celery(dsn, broker, tmp_path, settings=WITHOUT, env=env, pool="solo")
    app = Celery("sender", broker=f"redis+socket://{broker}", set_as_current=False)
    sent = tags(50)
    try:
        for tag in sent:
            app.send_task("echo", [tag])
        rows = collect(broker, len(sent), worker)
        code = worker.stop()
    finally:
        app.close()
        worker.kill()
    results = tally(sent, rows)
    left = backends_left(db)
    per_100 = round(100 * (sessions(db) - start) / len(sent), 1)
    record("celery", f"solo-{case}", results, conns_per_100=per_100, backends_left=left)
    assert code == 0, worker.log()[-3000:]
    assert (results.failed, results.wrong) == (0, 0), results.summary()
    assert "forkhooks:" not in worker.log(), worker.log()[-3000:]
    assert per_100 <= 4, per_100  # Celery closes pools only for prefork: one pool for the whole run either way


@pytest.mark.e2e
@pytest.mark.slow  # the benchmark's script, not a version's behaviour: once, in py311
def test_bench_script_writes_its_section(dsn: str, redis_socket: Path, tmp_path: Path) -> None:
    """`bench/celery_tasks.py` (smoke: 50 tasks, 1 round) runs end to end and replaces only its own section."""
    import subprocess
    import sys

    from .harness import ROOT

    out = tmp_path / "benchmarks.md"
    old = "<!-- bench/celery_tasks.py: start -->\n## Celery: an older run\n<!-- bench/celery_tasks.py: end -->\n"
    out.write_text(f"# Benchmarks\n\nthe rest of the file\n\n{old}")
    argv = [sys.executable, str(ROOT / "bench" / "celery_tasks.py"), "--tasks", "50", "--rounds", "1"]
    done = subprocess.run(
        [*argv, "--dsn", dsn, "--output", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=180
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    text = out.read_text()
    assert text.startswith("# Benchmarks\n\nthe rest of the file\n"), text
    assert "an older run" not in text and text.count("## Celery: tasks per second") == 1, text
    assert "| forkhooks.celery |" in text and "| Celery's own handling |" in text, text


@pytest.mark.parametrize(("module", "needs"), [("forkhooks.celery", "celery"), ("forkhooks.rq", "rq")])
def test_without_the_runner_installed_the_import_says_what_to_install(module: str, needs: str) -> None:
    """Importing forkhooks.celery without Celery (forkhooks.rq without RQ) fails with a one-line fix."""
    import subprocess

    from .harness import PYTHON, ROOT

    code = f"import sys; sys.modules[{needs!r}] = None; import {module}"
    done = subprocess.run([PYTHON, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert done.returncode != 0
    assert f"pip install 'forkhooks[{needs}]'" in done.stderr.strip().splitlines()[-1], done.stderr


# (case, settings, env): psycopg2, whose pool process cannot act on SIGTERM before its query returns.
COLD = [
    ("forkhooks.celery-psycopg2", PSYCOPG2, {"FORKHOOKS_TEST_CELERY": "1"}),
    ("control-psycopg2", PSYCOPG2, {}),
]


@pytest.mark.e2e
@pytest.mark.parametrize(("case", "settings", "env"), COLD, ids=[c[0] for c in COLD])
def test_hard_shutdown_cancels_running_queries(
    case: str, settings: str, env: dict[str, str], dsn: str, db: psycopg.Connection, broker: Path, tmp_path: Path
) -> None:
    """Ctrl-C until Celery terminates the pool (SIGINT to the worker's group: warm, cold, a wait, then hard)
    while a task is in pg_sleep(30): the query is cancelled, not left running on the server."""
    import os
    import signal

    from celery import Celery

    worker = celery(dsn, broker, tmp_path, settings=settings, env=env)
    app = Celery("sender", broker=f"redis+socket://{broker}", set_as_current=False)
    r = client(broker)
    slow_backend = 0
    try:
        app.send_task("sleep", [30])
        poll(lambda: r.llen(jobs.EVENTS) > 0, timeout=30, what="the task's query started")
        slow_backend = json.loads(r.lindex(jobs.EVENTS, 0))["slow_backend"]
        os.killpg(worker.pid, signal.SIGINT)  # warm shutdown: tasks may finish
        poll(lambda: "cold shutdown" in worker.log(), timeout=10, what="the warm shutdown")
        os.killpg(worker.pid, signal.SIGINT)  # cold shutdown: acknowledged tasks may still finish
        poll(lambda: "Hitting Ctrl+C again will terminate" in worker.log(), timeout=10, what="the cold shutdown")
        os.killpg(worker.pid, signal.SIGINT)  # still waiting for the task ("gracefully for cold shutdown")
        poll(lambda: "Waiting gracefully" in worker.log(), timeout=10, what="the wait for the cold shutdown")
        os.killpg(worker.pid, signal.SIGINT)  # hard shutdown: the pool is terminated, running tasks too
        still = still_running(db, slow_backend)
        exited = None
        if not still:
            exited = worker.proc.wait(30)  # the pool process, freed from its query, ends: the worker exits
    finally:
        app.close()
        worker.kill()
        if slow_backend:
            db.execute("SELECT pg_terminate_backend(%s)", [slow_backend])
    record("celery", f"hard-shutdown-{case}", tally([], []), query_left_running=still)
    if case.startswith("control"):
        assert still, "without forkhooks.celery the hard shutdown stopped the query anyway"
    else:
        assert not still, worker.log()[-3000:]
        assert exited is not None


# (case, settings, env): a pool process SIGKILLed runs no Python, whatever the driver.
KILLED = [
    ("forkhooks.celery", WITHOUT, {"FORKHOOKS_TEST_CELERY": "1"}),
    ("control-forkhooks.django-only", WITH_APP, {}),
]


@pytest.mark.e2e
@pytest.mark.parametrize(("case", "settings", "env"), KILLED, ids=[c[0] for c in KILLED])
def test_pool_process_killed_mid_query_leaves_no_query_running(
    case: str, settings: str, env: dict[str, str], dsn: str, db: psycopg.Connection, broker: Path, tmp_path: Path
) -> None:
    """A pool process SIGKILLed (the OOM killer, kill -9) in pg_sleep(30): its query is gone within 3 s."""
    from celery import Celery

    worker = celery(dsn, broker, tmp_path, settings=settings, env=env)
    app = Celery("sender", broker=f"redis+socket://{broker}", set_as_current=False)
    try:
        app.send_task("sleep", [30])
        _, killed, still = kill_mid_query(db, broker, worker)
        code = worker.stop()
    finally:
        app.close()
        worker.kill()
        end_sleeps(db)
    record("celery", f"sigkill-{case}", tally([], []), query_left_running=still)
    assert code == 0, worker.log()[-3000:]
    if case.startswith("control"):
        assert still, "without forkhooks.celery the killed pool process's query ended anyway"
    else:
        assert not still, worker.log()[-3000:]
        assert f"pool process {killed} died (SIGKILL) without closing: ended 1 backend(s)" in worker.log()
