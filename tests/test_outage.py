"""A deploy while PostgreSQL is down: once it is back, every worker serves within seconds, as without forkhooks.

Each test starts its own PostgreSQL and stops it before the server under test starts, so that
every worker warms (FORKHOOKS_WARM_TIMEOUT=1) against a server that is down for longer than the
warm-up may wait. psycopg_pool's own wait (`open(wait=True, timeout=...)`) closes the pool on
timeout, and a closed pool can never be opened again: Django kept it, and every later request
failed with "pool has already been opened/closed and cannot be reused" (the control on a bare
pool below). Warm-up now waits without closing, and drops a Django pool that reached no server.
"""

from __future__ import annotations

import json
import queue
import re
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import make_conninfo
from psycopg_pool import ConnectionPool, PoolTimeout

from forkhooks._core import tracked
from forkhooks.demo import loadgen
from forkhooks.demo.process import children

from .harness import PYTHON, ROOT, child_env, logged_pids, run_python
from .jobrunners import WITHOUT, celery, client, collect, tally
from .pgserver import PostgresServer
from .record import record
from .servers import Server, booted_workers, gunicorn, poll, start
from .uwsgiservers import WORKERS, clean, closed, ini, opened
from .uwsgiservers import serve as serve_uwsgi

WSGI = "tests.testsite.wsgi:application"
WARM_TIMEOUT = 1  # seconds: the server stays down for longer than this
# The example app queries at import by default: with the server down the master could not load it.
ENV = {"FORKHOOKS_WARM_TIMEOUT": str(WARM_TIMEOUT), "FORKHOOKS_EXAMPLE_STARTUP_QUERY": "0"}
RECOVERY = 15.0  # bound on the first success once PostgreSQL accepts connections again
REQUESTS = 200
REQUEST_TIMEOUT = 5.0  # per request after recovery: under the pool's 10 s checkout timeout
NOT_READY = re.compile(
    r"pool 'default' not ready within 1\.0s \(no connection: .+\); the worker serves and Django opens the pool on"
)
# uWSGI's stop signals as bits of /proc/<pid>/task/<tid>/status SigBlk (bit n-1 for signal n).
STOP_SIGNALS = (signal.SIGHUP, signal.SIGINT, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2, signal.SIGTERM)
STOP_BITS = {s - 1 for s in STOP_SIGNALS}


@pytest.fixture
def down_pg() -> Iterator[PostgresServer]:
    """A PostgreSQL for this test alone, stopped: the test starts it once its workers have warmed."""
    server = PostgresServer()
    try:
        server.halt()
        yield server
    finally:
        server.stop()


def serves(server: Server) -> bool:
    """One /echo request answered with its own tag; raises if the server exited."""
    if server.proc.poll() is not None:
        raise RuntimeError(f"server exited with {server.proc.returncode}:\n{server.log()[-3000:]}")
    try:
        status, body = loadgen.get(server.target, "/echo?tag=probe", timeout=RECOVERY)
    except Exception:  # refused, reset, timed out
        return False
    return status == 200 and json.loads(body).get("tag") == "probe"


@dataclass
class Recovery:
    """What happened once PostgreSQL was back."""

    first_ok: float  # seconds from PostgreSQL accepting connections to the first request served
    results: loadgen.Results


def recover(server: Server, pg: PostgresServer) -> Recovery:
    """Start PostgreSQL, wait (bounded) for a request to succeed, then send REQUESTS more."""
    back = pg.start()
    poll(lambda: serves(server), timeout=RECOVERY, what="a request served once PostgreSQL is back")
    first_ok = time.monotonic() - back
    results = loadgen.run(server.target, REQUESTS, concurrency=16, timeout=REQUEST_TIMEOUT)
    return Recovery(first_ok, results)


# (id, gunicorn arguments, with forkhooks): the last is the parity baseline without forkhooks.
GUNICORN = [
    ("hooks", ["-c", "python:forkhooks.gunicorn", "-k", "sync"], True),
    ("worker-class", ["-k", "forkhooks.workers.SyncWorker"], True),
    ("gevent", ["-k", "forkhooks.workers.GeventWorker"], True),
    ("control-without-forkhooks", ["-k", "sync"], False),
]


@pytest.mark.slow  # one outage per server kind, once in the matrix; the fast cases below run everywhere
@pytest.mark.e2e
@pytest.mark.parametrize(("name", "args", "with_forkhooks"), GUNICORN, ids=[g[0] for g in GUNICORN])
def test_gunicorn_started_while_postgresql_is_down_serves_once_it_is_back(
    name: str, args: list[str], with_forkhooks: bool, down_pg: PostgresServer, tmp_path: Path
) -> None:
    """gunicorn --preload -w 4 started with PostgreSQL down: each worker warns once and serves; once the
    server is back, the first request succeeds within 15 s and 200 more all succeed, on all 4 workers.

    The control without forkhooks does the same: the parity baseline (Django opens its pool on the first request).
    """
    if name == "gevent":
        pytest.importorskip("gevent", reason="the gevent worker needs gevent: pip install 'forkhooks[gevent]'")
    server = start(gunicorn(*args, WSGI), down_pg.dsn, tmp_path, env=ENV)
    try:
        if with_forkhooks:
            poll(lambda: len(logged_pids(server.log(), "opened")) == 4, timeout=30, what="4 workers warmed")
        else:
            poll(lambda: len(booted_workers(server.log())) == 4, timeout=30, what="4 workers booted")
        run = recover(server, down_pg)
    finally:
        code = server.stop()
    log = server.log()
    suite = "outage" if with_forkhooks else "outage-control"
    record(suite, f"gunicorn-{name}", run.results, first_ok_after_s=round(run.first_ok, 2))
    assert (run.results.ok, run.results.failed, run.results.wrong) == (REQUESTS, 0, 0), run.results.summary()
    assert len(run.results.pids) == 4, run.results.summary()
    assert code == 0, log[-3000:]
    if with_forkhooks:
        assert len(NOT_READY.findall(log)) == 4, log[-3000:]  # one line per worker
        assert "already been opened/closed" not in log, log[-3000:]
        assert "Traceback" not in log, log[-3000:]


def thread_masks(pid: int) -> dict[int, set[int]]:
    """Each thread of `pid` but its main one: the signal bits it blocks."""
    masks = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        tid = int(task.name)
        if tid == pid:
            continue
        status = (task / "status").read_text()
        mask = int(re.search(r"SigBlk:\s*([0-9a-f]+)", status).group(1), 16)  # type: ignore[union-attr]
        masks[tid] = {bit for bit in range(64) if mask >> bit & 1}
    return masks


UWSGI = [("default", "uwsgi.ini"), ("lazy-apps", "uwsgi-lazy-apps.ini")]


@pytest.mark.slow  # one outage per server kind, once in the matrix; the fast cases below run everywhere
@pytest.mark.e2e
@pytest.mark.parametrize(("name", "example"), UWSGI, ids=[u[0] for u in UWSGI])
def test_uwsgi_started_while_postgresql_is_down_serves_once_it_is_back(
    name: str, example: str, down_pg: PostgresServer, tmp_path: Path
) -> None:
    """uWSGI, 4 workers, started with PostgreSQL down: once it is back every worker serves, the pool
    Django opens on the first request runs its threads with stop signals blocked, and every worker
    closes it at stop."""
    server = serve_uwsgi(down_pg.dsn, tmp_path, ini(tmp_path, example), env=ENV)
    try:
        poll(lambda: len(opened(server.log())) == WORKERS, timeout=30, what=f"{WORKERS} workers warmed")
        run = recover(server, down_pg)
        masks = {pid: thread_masks(pid) for pid in children(server.pid)}
        code = server.stop()
    finally:
        server.kill()
    log = server.log()
    record("outage", f"uwsgi-{name}", run.results, first_ok_after_s=round(run.first_ok, 2))
    assert (run.results.ok, run.results.failed, run.results.wrong) == (REQUESTS, 0, 0), run.results.summary()
    assert len(run.results.pids) == WORKERS, run.results.summary()
    assert len(NOT_READY.findall(log)) == WORKERS, log[-3000:]
    pool_threads = {pid: m for pid, m in masks.items() if m}
    assert len(pool_threads) == WORKERS, masks  # every worker runs a fresh pool's threads
    unblocked = {pid: [t for t, bits in m.items() if not STOP_BITS <= bits] for pid, m in pool_threads.items()}
    assert not any(unblocked.values()), (unblocked, masks)
    assert opened(log) == closed(log) and len(closed(log)) == WORKERS, log[-3000:]
    assert code == 0, log[-3000:]
    clean(log)


@pytest.mark.slow  # one outage per server kind, once in the matrix; the fast cases below run everywhere
@pytest.mark.e2e
def test_celery_pool_processes_started_while_postgresql_is_down_run_tasks_once_it_is_back(
    down_pg: PostgresServer, redis_socket: Path, tmp_path: Path
) -> None:
    """Celery prefork (4 processes, forkhooks.celery) started with PostgreSQL down: each pool process
    warns once; once the server is back a task succeeds within 15 s and 200 more all succeed."""
    from celery import Celery

    from .project import jobs

    client(redis_socket).flushall()
    env = {"FORKHOOKS_TEST_CELERY": "1", **ENV}
    worker = celery(down_pg.dsn, redis_socket, tmp_path, settings=WITHOUT, env=env)
    app = Celery("sender", broker=f"redis+socket://{redis_socket}", set_as_current=False)
    r = client(redis_socket)
    try:
        poll(
            lambda: len(logged_pids(worker.log(), "opened", who="celery worker")) == 4,
            timeout=30,
            what="4 pool processes warmed",
        )
        back = down_pg.start()

        def task_ok() -> bool:
            r.delete(jobs.RESULTS)
            app.send_task("echo", ["probe"])
            rows = collect(redis_socket, 1, worker, timeout=10)
            return "error" not in rows[0]

        poll(task_ok, timeout=RECOVERY, what="a task run once PostgreSQL is back")
        first_ok = time.monotonic() - back
        r.delete(jobs.RESULTS)
        sent = [f"{i}-outage" for i in range(REQUESTS)]
        for tag in sent:
            app.send_task("echo", [tag])
        results = tally(sent, collect(redis_socket, REQUESTS, worker, timeout=60))
        code = worker.stop()
    finally:
        app.close()
        worker.kill()
    log = worker.log()
    record("outage", "celery-prefork", results, first_ok_after_s=round(first_ok, 2))
    assert (results.ok, results.failed, results.wrong) == (REQUESTS, 0, 0), results.summary()
    assert len(NOT_READY.findall(log)) == 4, log[-3000:]
    assert "already been opened/closed" not in log, log[-3000:]
    assert code == 0, log[-3000:]


class Script:
    """tests/project/tracked_outage.py, read one line at a time with a bound."""

    def __init__(self, kind: str, dsn: str) -> None:
        self.proc = subprocess.Popen(
            [PYTHON, "-m", "tests.project.tracked_outage", kind],
            cwd=ROOT,
            env=child_env(dsn),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))

    def expect(self, word: str, timeout: float) -> str:
        """The next line, which must start with `word`; its rest."""
        try:
            line = self.lines.get(timeout=timeout)
        except queue.Empty:
            raise TimeoutError(f"{word!r} not within {timeout}s: {self.stderr()[-3000:]}") from None
        assert line.split(" ", 1)[0] == word, (line, self.stderr()[-3000:])
        return line.partition(" ")[2]

    def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def stderr(self) -> str:
        if self.proc.poll() is None:
            return ""
        assert self.proc.stderr is not None
        return self.proc.stderr.read()

    def finish(self) -> tuple[int, str]:
        """Its exit code and stderr (it exits once its child did)."""
        code = self.proc.wait(30)
        return code, self.stderr()


@pytest.mark.e2e
@pytest.mark.parametrize("kind", ["psycopg_pool", "psycopg2"])
def test_tracked_pool_warmed_while_postgresql_is_down_stays_open_and_serves(kind: str, tmp_path: Path) -> None:
    """A tracked pool built while the server was up; the server stops; a forked child warms: one warning line,
    no traceback, the pool stays open; once the server is back the child's queries succeed within 15 s."""
    pg = PostgresServer()
    script = Script(kind, pg.dsn)
    try:
        script.expect("built", timeout=30)
        pg.halt()
        script.send("down")
        warm = json.loads(script.expect("warmed", timeout=30))
        back = pg.start()
        script.expect("first-ok", timeout=RECOVERY + 5)
        first_ok = time.monotonic() - back
        done = json.loads(script.expect("done", timeout=60))
        code, stderr = script.finish()
    finally:
        script.proc.kill()
        pg.stop()
    results = loadgen.Results(requests=200, ok=done.get("ok", 0), failed=done.get("failed", 0))
    record("outage", f"tracked-{kind}", results, first_ok_after_s=round(first_ok, 2))
    assert warm["closed"] is False and warm["failures"] == 0, warm
    assert any("(not ready)" in label for label in warm["opened"]), warm
    lines = [line for line in stderr.splitlines() if "not ready within 1.0s" in line]
    assert len(lines) == 1 and lines[0].startswith("forkhooks WARNING forkhooks: tracked"), stderr[-3000:]
    assert "Traceback" not in stderr, stderr[-3000:]
    assert first_ok <= RECOVERY, first_ok
    assert (done.get("ok"), done.get("failed"), done.get("wrong"), done.get("closed")) == (200, 0, 0, False), done
    assert code == 0, stderr[-3000:]


@pytest.mark.e2e
def test_control_psycopg_pool_wait_closes_the_pool_for_good_and_forkhooks_wait_does_not(
    down_pg: PostgresServer,
) -> None:
    """Control: psycopg_pool's open(wait=True, timeout=1) against a down server closes the pool, and once
    the server is back it cannot be opened again ("pool has already been opened/closed"), which is what
    Django was left with. The same pool waited on by forkhooks' wait stays open and serves."""
    theirs: ConnectionPool[Any] = ConnectionPool(down_pg.dsn, min_size=1, open=False, timeout=5)
    ours: ConnectionPool[Any] = ConnectionPool(down_pg.dsn, min_size=1, open=False, timeout=5)
    try:
        with pytest.raises(PoolTimeout):
            theirs.open(wait=True, timeout=WARM_TIMEOUT)
        waited = tracked.wait_min_size(ours, WARM_TIMEOUT)
        assert (waited.ready, waited.idle) == (False, 0)
        assert "connection failed" in waited.error or "No such file" in waited.error, waited
        down_pg.start()
        with psycopg.connect(down_pg.dsn) as conn:  # the server answers
            assert conn.execute("SELECT 1").fetchone() == (1,)
        assert theirs.closed
        with pytest.raises(psycopg.OperationalError, match="already been opened/closed"):
            theirs.open()  # what Django does before every getconn()
        assert not ours.closed
        with ours.connection(timeout=RECOVERY) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
    finally:
        theirs.close()
        ours.close()


LIMITED = "forkhooks_outage_limited"


@pytest.mark.e2e
def test_django_pool_holding_some_connections_is_kept(dsn: str, db: psycopg.Connection) -> None:
    """A server that answers but grants fewer connections than min_size (a role limited to 1, min_size 2):
    one warning with the count and the server's error, and the pool is kept, open, and serves."""
    db.execute(f"DROP ROLE IF EXISTS {LIMITED}")
    db.execute(f"CREATE ROLE {LIMITED} LOGIN CONNECTION LIMIT 1")
    try:
        done = run_python(
            """
            import logging, os, sys
            logging.basicConfig(level=logging.INFO)  # stderr: the pool thread's lines never split a result line
            import django
            from django.conf import settings
            from forkhooks.demo.site.database import django_database
            settings.configure(DATABASES={"default": django_database(
                os.environ["LIMITED_DSN"], pool={"min_size": 2, "max_size": 2})})
            django.setup()
            import forkhooks
            from django.db import connection
            forkhooks.warm(timeout=1.0)
            pool = connection.pool
            print("kept", not pool.closed, pool.get_stats()["pool_available"])
            with connection.cursor() as cursor:
                cursor.execute("SELECT 1")
                print("query", cursor.fetchone()[0])
            print("same", connection.pool is pool)
            """,
            dsn,
            LIMITED_DSN=make_conninfo(dsn, user=LIMITED),
        )
    finally:
        db.execute(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '{LIMITED}'")
        poll(lambda: not db.execute(f"SELECT 1 FROM pg_stat_activity WHERE usename = '{LIMITED}'").fetchall(),
             timeout=5, what="the limited role's sessions gone")  # fmt: skip
        db.execute(f"DROP ROLE {LIMITED}")
    out, log = done.stdout, done.stderr
    assert done.returncode == 0, log[-3000:]
    assert log.count("not ready within") == 1, log
    assert "pool 'default' not ready within 1.0s (1 of min_size=2 connections: " in log, log
    assert "too many connections for role" in log and "the pool keeps connecting" in log, log
    assert out.splitlines() == ["kept True 1", "query 1", "same True"], out
