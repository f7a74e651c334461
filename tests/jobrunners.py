"""Real Celery and RQ workers for the tests: started in their own session, stopped by a signal to the group."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import redis

from forkhooks.demo.loadgen import Results
from forkhooks.demo.process import ServerProcess, children, poll

from .harness import PYTHON, ROOT, app_backends, child_env
from .project import jobs

# The job runners' Django settings: pooling on (min 1, max 4), with and without the forkhooks.django app.
WITH_APP = "tests.project.settings_jobs"
WITHOUT = "tests.project.settings_jobs_without"
# Huey and django-q2 without forkhooks.django: what their jobs are enqueued with.
RUNNERS_WITHOUT = "tests.project.settings_runners_without"


def client(sock: Path) -> redis.Redis:
    """A Redis client on the test Redis."""
    return redis.Redis(unix_socket_path=str(sock))


def sessions(db: psycopg.Connection) -> int:
    """Sessions PostgreSQL ever started on this database (counted at connect, flushed by the time a backend exits)."""
    row = db.execute("SELECT sessions FROM pg_stat_database WHERE datname = current_database()").fetchone()
    assert row is not None
    return int(row[0])


def running(db: psycopg.Connection, text: str) -> list[int]:
    """Backends whose active query contains `text` (observers excluded)."""
    rows = db.execute(
        "SELECT pid FROM pg_stat_activity WHERE state = 'active' AND query LIKE %s"
        " AND application_name <> 'forkhooks-observer' AND pid <> pg_backend_pid()",
        [f"%{text}%"],
    ).fetchall()
    return [int(r[0]) for r in rows]


class WorkerProcess(ServerProcess):
    """A worker (celery, rq, huey, django-q2) as a group leader; its log in `tmp`/worker.log."""

    def __init__(self, argv: list[str], dsn: str, sock: Path, tmp: Path, env: dict[str, str]) -> None:
        full_env = child_env(dsn, FORKHOOKS_TEST_REDIS=str(sock), **env)
        super().__init__(argv, cwd=ROOT, env=full_env, log_path=tmp / "worker.log", target="")

    def alive(self) -> bool:
        if self.proc.poll() is not None:
            raise RuntimeError(f"worker exited with {self.proc.returncode}:\n{self.log()[-4000:]}")
        return True

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        """`sig` to the whole group, as systemd and a terminal do; SIGKILL what is left after `timeout`."""
        try:
            if self.proc.poll() is None:
                os.killpg(self.pid, sig)
            return self.proc.wait(timeout)
        finally:
            self.kill()

    def kill(self) -> None:
        """SIGKILL the group and every descendant (a control stopped at its first proof, or cleanup).

        RQ's horses start a session of their own (setsid): a signal to the worker's group misses
        them, and a horse left blocked on a shared socket would keep a backend for the next tests.
        """
        found, todo = [], [self.pid]
        while todo:
            kids = children(todo.pop())
            found += kids
            todo += kids
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        for pid in found:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if self.proc.poll() is None:
            self.proc.wait(10)


def celery(
    dsn: str,
    sock: Path,
    tmp: Path,
    *,
    settings: str,
    env: dict[str, str],
    pool: str = "prefork",
    extra: tuple[str, ...] = (),
    app: str = "tests.project.celeryapp",
) -> WorkerProcess:
    """celery -A APP worker, 4 processes, waiting (bounded) until it is ready."""
    argv = [PYTHON, "-m", "celery", "-A", app, "worker", "-P", pool, "-c", "4", "-l", "info"]
    argv += extra
    argv += ["--without-gossip", "--without-mingle", "--without-heartbeat", "-n", f"test{os.getpid()}@%h"]
    worker = WorkerProcess(argv, dsn, sock, tmp, {"DJANGO_SETTINGS_MODULE": settings, **env})
    r = client(sock)
    try:
        poll(lambda: worker.alive() and r.get("forkhooks:ready") is not None, timeout=60, what="celery worker ready")
    except BaseException:
        worker.kill()
        raise
    return worker


def collect(
    sock: Path,
    n: int,
    worker: WorkerProcess,
    *,
    timeout: float = 120,
    stop_after_bad: int | None = None,
    interval: float = 0.05,
) -> list[dict[str, Any]]:
    """The answers so far, once `n` arrived (or `stop_after_bad` failed/wrong ones: a control's proof)."""
    r = client(sock)
    rows: list[dict[str, Any]] = []

    def done() -> bool:
        rows.extend(json.loads(x) for x in r.lrange(jobs.RESULTS, len(rows), -1))
        bad = sum("error" in x or x["got"] != x["tag"] for x in rows)
        if stop_after_bad is not None and bad >= stop_after_bad:
            return True
        return len(rows) >= n or (worker.proc.poll() is not None)

    poll(done, timeout=timeout, what=f"{n} answers", interval=interval)
    return rows


def tally(tags: list[str], rows: list[dict[str, Any]]) -> Results:
    """Failed (an error, or no answer) and wrong (another job's row) among the jobs sent."""
    answered = {r["tag"]: r for r in rows}
    results = Results(requests=len(tags))
    for tag in tags:
        row = answered.get(tag)
        if row is None or "error" in row:
            results.failed += 1
            results.errors[(row or {}).get("error", "no answer")[:60]] += 1
        elif row["got"] != tag:
            results.wrong += 1
        else:
            results.ok += 1
            results.pids[row["pid"]] += 1
    return results


def parent(sock: Path) -> dict[str, Any]:
    """What the worker's main process saw of its own session: before/after backends and the first error."""
    rows = [json.loads(x) for x in client(sock).lrange(jobs.PARENT, 0, -1)]
    out: dict[str, Any] = {r["when"]: r.get("backend", "error") for r in rows}
    out["errors"] = [r["error"] for r in rows if "error" in r]
    out["survived"] = bool(out.get("before")) and out.get("before") == out.get("after")
    return out


def comes_true(check: Callable[[], bool], *, timeout: float) -> bool:
    """Poll `check` with a bound: True as soon as it holds, False if it never did (a control's expected outcome)."""
    try:
        poll(check, timeout=timeout, what="")
    except TimeoutError:
        return False
    return True


def backends_left(db: psycopg.Connection, timeout: float = 10) -> int:
    """App backends still on the server once they had `timeout` seconds to go (0 expected)."""
    comes_true(lambda: app_backends(db) == 0, timeout=timeout)
    return app_backends(db)


def still_running(db: psycopg.Connection, backend: int, *, timeout: float = 5) -> bool:
    """Whether `backend` still runs its pg_sleep after `timeout` s (well under the 30 s query; time to cancel)."""
    return not comes_true(lambda: backend not in running(db, "pg_sleep"), timeout=timeout)


def per_child_backends(rows: list[dict[str, Any]]) -> Counter[int]:
    """How many distinct backends each worker process answered from."""
    seen: dict[int, set[int]] = {}
    for r in rows:
        if "backend" in r:
            seen.setdefault(r["pid"], set()).add(r["backend"])
    return Counter({pid: len(b) for pid, b in seen.items()})


def kill_mid_query(db: psycopg.Connection, sock: Path, worker: WorkerProcess) -> tuple[int, int, bool]:
    """SIGKILL the process running the slow job once the server runs its pg_sleep.

    (its backend, its pid, whether the query still runs 3 s after the kill). The job announces its
    backend just before the query: the kill waits until the server really runs it.
    """
    r = client(sock)
    poll(lambda: worker.alive() and r.llen(jobs.EVENTS) > 0, timeout=60, what="the slow job's query")
    event = json.loads(r.lindex(jobs.EVENTS, 0))
    backend, pid = int(event["slow_backend"]), int(event["pid"])
    poll(lambda: backend in running(db, "pg_sleep"), timeout=10, what="the job's pg_sleep running")
    os.kill(pid, signal.SIGKILL)
    return backend, pid, still_running(db, backend, timeout=3)


def end_sleeps(db: psycopg.Connection) -> None:
    """Terminate every pg_sleep left on the server: no 30 s query outlives its test."""
    db.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query LIKE '%%pg_sleep%%'"
        " AND pid <> pg_backend_pid() AND application_name <> 'forkhooks-observer'"
    )


def enqueue_via(runner: str, dsn: str, sock: Path, env: dict[str, str], job: str, args: list[str]) -> None:
    """Enqueue with the runner's own call ("huey" or "q2"), from a process of its own (tests/project/enqueue.py)."""
    own = {k: v for k, v in env.items() if k != "FORKHOOKS_TEST_PARENT"}  # only the runner's process holds a session
    full = child_env(dsn, FORKHOOKS_TEST_REDIS=str(sock), DJANGO_SETTINGS_MODULE=RUNNERS_WITHOUT, **own)
    argv = [PYTHON, "-m", "tests.project.enqueue", runner, job, *args]
    done = subprocess.run(argv, cwd=ROOT, env=full, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]


def stop_timed(worker: WorkerProcess, signum: int, *, timeout: float) -> tuple[int | None, float | None]:
    """Send `signum` to the group; its exit code and how long it took, or (None, None) if it hung past `timeout`."""
    start = time.monotonic()
    os.killpg(worker.pid, signum)
    try:
        code = worker.proc.wait(timeout)
    except subprocess.TimeoutExpired:
        return None, None
    return code, round(time.monotonic() - start, 1)


def backend_exists(db: psycopg.Connection, backend: int) -> bool:
    """Whether the server still lists `backend`."""
    return db.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", [backend]).fetchone() is not None


def app_names(db: psycopg.Connection) -> list[str]:
    """The application_name of every app backend (observers excluded)."""
    rows = db.execute(
        "SELECT application_name FROM pg_stat_activity WHERE backend_type = 'client backend'"
        " AND application_name <> 'forkhooks-observer'"
    ).fetchall()
    return [str(r[0]) for r in rows]
