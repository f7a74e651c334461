"""Huey (``run_huey -k process``) and django-q2 (``qcluster``) on MySQL/MariaDB, CONN_MAX_AGE=None.

The supervisor (Huey's consumer, django-q2's qcluster process) runs a query at start and keeps the
connection, as a start-up check leaves it, then forks its workers. The only forkhooks line is
``"forkhooks.django"`` in INSTALLED_APPS (tests/project/settings_mysqlrunners.py); the controls drop it.
"""

from __future__ import annotations

import json
import secrets
import signal
from pathlib import Path
from typing import Any

import pytest

from . import mariadb
from .harness import PYTHON
from .jobrunners import WorkerProcess, client, collect, parent, poll, stop_timed, tally
from .mysqlrunners import manage, runner_env
from .project import jobs
from .record import record

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

READY = "forkhooks:ready"  # tests/project/mysqlrunners: one row per worker started
N = 200

ENQUEUE = """
import sys, django
django.setup()
tags = sys.argv[2:]
if sys.argv[1] == "huey":
    from tests.project.mysqlrunners.tasks import echo
    for tag in tags:
        echo(tag)
else:
    from django_q.tasks import async_task
    for tag in tags:
        async_task("tests.project.mysqljobs.echo", tag)
"""


def answers(sock: Path, n: int, worker: WorkerProcess, *, control: bool) -> list[dict[str, Any]]:
    """The jobs' answers: all `n`, or for a control what came within 20 s (a worker may hang on the shared socket)."""
    if not control:
        return collect(sock, n, worker)
    try:
        return collect(sock, n, worker, timeout=20, stop_after_bad=3)
    except TimeoutError:
        return [json.loads(x) for x in client(sock).lrange(jobs.RESULTS, 0, -1)]


# (runner, case, forkhooks.django installed)
CASES = [(r, c, c == "forkhooks.django") for r in ("huey", "django-q2") for c in ("forkhooks.django", "control")]


@pytest.mark.parametrize(("runner", "case", "app"), CASES, ids=[f"{r}-{c}" for r, c, _ in CASES])
def test_jobs_on_their_own_sessions(
    runner: str, case: str, app: bool, mysql_dsn: str, broker: Path, tmp_path: Path
) -> None:
    """4 process workers, 200 jobs, each answering with its tag and CONNECTION_ID(): 0 failed, 0 wrong, every
    worker on its own session (never the supervisor's), the supervisor's session never killed, none left after
    the stop. The controls (no forkhooks.django) show what each runner does with the supervisor's session."""
    poll(lambda: mariadb.sessions(mysql_dsn) == [], timeout=10, what="no session left by an earlier test")
    env = runner_env(mysql_dsn, broker, app=app)
    if runner == "huey":
        argv = [PYTHON, "-m", "django", "run_huey", "-k", "process", "-w", "4"]
    else:
        argv = [PYTHON, "-m", "django", "qcluster"]
    own = {k: v for k, v in env.items() if k != "FORKHOOKS_TEST_REDIS"}  # WorkerProcess sets it
    worker = WorkerProcess(argv, mysql_dsn, broker, tmp_path, {**own, "FORKHOOKS_TEST_PARENT": "1"})
    tags = [f"{i}-{secrets.token_hex(6)}" for i in range(N)]
    code = stopped_in = None
    try:
        poll(lambda: worker.alive() and client(broker).llen(READY) >= 4, timeout=60, what=f"{runner} workers started")
        # The supervisor's start-up session, once its workers run: still on the server, or ended.
        before = parent(broker).get("before")
        kept = any(session == before for session, _ in mariadb.sessions(mysql_dsn))
        manage(mysql_dsn, env, "-c", ENQUEUE, "huey" if runner == "huey" else "q2", *tags)
        rows = answers(broker, N, worker, control=not app)
        # Huey stops on SIGTERM; django-q2's qcluster process on SIGINT (on SIGTERM to the group it hangs
        # upstream, tests/test_djangoq.py): either way the supervisor's exit check runs.
        stop = signal.SIGTERM if runner == "huey" else signal.SIGINT
        code, stopped_in = stop_timed(worker, stop, timeout=30 if app else 10)
    finally:
        worker.kill()
    par = parent(broker)
    results = tally(tags if app else [r["tag"] for r in rows] or tags, rows)
    owners: dict[int, set[int]] = {}
    for row in rows:
        if "backend" in row:
            owners.setdefault(int(row["backend"]), set()).add(int(row["pid"]))
    on_parents = sum(1 for r in rows if r.get("backend") == par.get("before"))
    record(
        f"mysql-{runner}",
        case,
        results,
        sessions=len(owners),
        on_parents_session=on_parents,
        parents_session_kept=kept,
        parent_errors=par["errors"][:1],
        stop_s=stopped_in,
    )
    if not app and runner == "huey":  # the workers answer on the consumer's session: rows go to the wrong job
        assert results.failed + results.wrong > 0 and on_parents > 0, (results.summary(), par, worker.log()[-3000:])
        return
    if not app:
        # django-q2's Sentinel calls close_all() before it spawns the workers: they start clean, but
        # mysqlclient's close sends COM_QUIT on the socket the qcluster process still holds: its session
        # is ended under it (nothing in that process closed it).
        assert (results.failed, results.wrong, on_parents) == (0, 0, 0), (results.summary(), par)
        assert not kept and "forkhooks" not in worker.log(), (par, worker.log()[-3000:])
        return
    assert (results.failed, results.wrong) == (0, 0), (results.summary(), worker.log()[-3000:])
    assert on_parents == 0, par
    assert all(len(pids) == 1 for pids in owners.values()), owners  # no session serves two workers
    assert len(owners) == len(results.pids) >= 2, (owners, results.summary())  # one session per worker, kept
    assert par["errors"] == [] and isinstance(par.get("after"), int), par  # the supervisor's queries all worked
    # Its start-up session closed by the supervisor itself before the fork (its children inherit none).
    who = "huey consumer" if runner == "huey" else "django-q2 supervisor"
    assert not kept and f"{who} {worker.pid} closed 1 connection" in worker.log(), worker.log()[-3000:]
    assert code == 0, worker.log()[-3000:]
    poll(lambda: mariadb.sessions(mysql_dsn) == [], timeout=10, what="every session gone after the stop")
