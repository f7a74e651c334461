"""Real gunicorn with gevent workers and --preload: Django connections per greenlet, drivers that yield.

gunicorn's gevent worker patches in the worker, after --preload imported Django
and the drivers in the master: without forkhooks every request fails with
"DatabaseWrapper objects created in a thread can only be used in that same thread".
"""

from __future__ import annotations

import signal
import threading
from pathlib import Path

import psycopg
import pytest

from forkhooks.demo import loadgen

from .harness import app_backends, run_python
from .record import record
from .servers import Server, answers_at_all, gevent_booted, gunicorn, poll, start, stop_group

pytest.importorskip("gevent", reason="the gevent worker needs gevent: pip install 'forkhooks[gevent]'")
pytest.importorskip("packaging", reason="gunicorn's gevent worker imports packaging")

REQUESTS = 500
WSGI = "tests.testsite.wsgi:application"
PSYCOPG2 = {"DJANGO_SETTINGS_MODULE": "tests.project.site_psycopg2"}

# (id, gunicorn arguments, environment): psycopg 3 with Django's pool, psycopg2 with psycogreen.
ENABLED = [
    ("conf-psycopg", ["-c", "gunicorn_conf/star.py", "-k", "gevent"], {}),
    ("python-module-psycopg2", ["-c", "python:forkhooks.gunicorn", "-k", "gevent"], PSYCOPG2),
    ("k-psycopg", ["-k", "forkhooks.workers.GeventWorker"], {}),
    ("k-psycopg2", ["-k", "forkhooks.workers.GeventWorker"], PSYCOPG2),
]
# (id, environment, workers). The last: a master that never touched a connection. Its workers' greenlets
# still share the handler created before patching, so the wrapper the first greenlet makes; one worker, so
# that greenlets overlap (a finished greenlet's id can be reused by the next, which then passes Django's check).
CONTROLS = [
    ("psycopg", {}, 4),
    ("psycopg2", PSYCOPG2, 4),
    ("no-start-up-query", {"FORKHOOKS_EXAMPLE_STARTUP_QUERY": "0"}, 1),
]


def serve(dsn: str, tmp_path: Path, args: list[str], env: dict[str, str]) -> Server:
    """gunicorn with 4 preloaded gevent workers, answering, every one booted (a late one would get no load)."""
    return gevent_booted(start(gunicorn(*args, WSGI), dsn, tmp_path, env=env))


def most_queries_at_once_in_one_worker(db: psycopg.Connection, target: str, clients: int = 8) -> int:
    """Send `clients` concurrent 3-second queries; wait until one worker runs two at once (max seen)."""
    answers: list[loadgen.Results] = []
    sender = threading.Thread(
        target=lambda: answers.append(loadgen.run(target, clients, concurrency=clients, path="/slow/3", timeout=30))
    )
    sender.start()
    most = 0

    def two_at_once() -> bool:
        nonlocal most
        rows = db.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND query LIKE '%pg_sleep%'"
            " AND application_name LIKE 'forkhooks:worker:%' GROUP BY application_name"
        ).fetchall()
        most = max([most, *(n for (n,) in rows)])
        return most >= 2

    try:
        # 8 clients on 4 workers: one worker holds two at once, unless a query blocks its whole worker.
        poll(two_at_once, timeout=6, what="one gevent worker running two queries at once")
    finally:
        sender.join()
    assert answers and (answers[0].ok, answers[0].wrong) == (clients, 0), answers[0].summary()
    return most


@pytest.mark.e2e
@pytest.mark.parametrize(("name", "args", "env"), ENABLED, ids=[c[0] for c in ENABLED])
def test_gevent_greenlets_get_their_own_connections_and_rows(
    name: str, args: list[str], env: dict[str, str], dsn: str, db: psycopg.Connection, tmp_path: Path
) -> None:
    """With forkhooks and no monkey-patching in the conf file: 0 failed, 0 wrong, queries overlap in a worker."""
    server = serve(dsn, tmp_path, args, env)
    try:
        results = loadgen.run(server.target, REQUESTS, concurrency=64)
        overlap = most_queries_at_once_in_one_worker(db, server.target)
    finally:
        code = server.stop()
    poll(lambda: app_backends(db) == 0, timeout=5, what="all app backends gone after shutdown")
    record("gevent", name, results, queries_at_once_in_one_worker=overlap)
    assert results.requests == REQUESTS
    assert (results.failed, results.wrong) == (0, 0), results.summary()
    assert len(results.pids) == 4, results.summary()
    assert code == 0, server.log()[-3000:]
    assert "after gevent patched: Django connections per greenlet" in server.log()


@pytest.mark.e2e
@pytest.mark.parametrize(("name", "env", "workers"), CONTROLS, ids=[c[0] for c in CONTROLS])
def test_control_gevent_without_forkhooks_fails(
    name: str, env: dict[str, str], workers: int, dsn: str, db: psycopg.Connection, tmp_path: Path
) -> None:
    """The same preloaded gevent workers without forkhooks: greenlets share one wrapper and Django refuses it."""
    # Not even /health answers 200: Django's request_finished handler touches the shared wrapper too.
    server = Server(gunicorn("-k", "gevent", "-w", str(workers), WSGI), dsn, tmp_path, env=env)
    try:
        poll(lambda: answers_at_all(server), timeout=30, what="gunicorn answering, with any status")
        results = loadgen.run(server.target, 40, concurrency=8, timeout=3, stop_when=loadgen.proven(failed=5))
    finally:
        server.kill()
    record("gevent-control", name, results)
    assert results.failed + results.wrong > 0, results.summary()
    assert "can only be used in that same thread" in server.log()


@pytest.mark.parametrize("missing", ["gevent", "packaging.version"])
def test_gevent_worker_without_gevent_or_packaging_names_the_extra(missing: str) -> None:
    """-k forkhooks.workers.GeventWorker without gevent (or packaging): an error naming the extra; the rest imports."""
    done = run_python(
        f"""
        import sys
        sys.modules[{missing!r}] = None  # as if it were not installed
        from forkhooks.workers import *  # needs no gevent
        import forkhooks.workers
        try:
            forkhooks.workers.GeventWorker
        except ImportError as exc:
            print(exc)
        """
    )
    assert "pip install 'forkhooks[gevent]'" in done.stdout, done.stderr


def test_psycopg2_without_psycogreen_is_named_in_a_warning(dsn: str) -> None:
    """Patched by gevent, psycopg2 loaded, psycogreen missing: the worker warns what to install and goes on."""
    done = run_python(
        """
        import logging, sys, types
        sys.modules["psycogreen"] = None  # as if it were not installed
        import psycopg2
        from gevent import monkey
        monkey.patch_all()
        import forkhooks.gunicorn as fh
        logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(levelname)s %(message)s")
        fh.post_worker_init(types.SimpleNamespace(log=logging.getLogger("gunicorn.error")))
        print("served on")
        """,
        dsn,
    )
    assert done.returncode == 0, done.stderr
    assert "WARNING forkhooks: psycopg2 blocks every greenlet" in done.stdout, done.stdout
    assert "pip install psycogreen" in done.stdout
    assert done.stdout.rstrip().endswith("served on")


STOPS = [
    ("hooks", ["-c", "python:forkhooks.gunicorn", "-k", "gevent"], signal.SIGTERM),
    ("hooks", ["-c", "python:forkhooks.gunicorn", "-k", "gevent"], signal.SIGINT),
    ("k-gevent", ["-k", "forkhooks.workers.GeventWorker"], signal.SIGTERM),
]


@pytest.mark.e2e
@pytest.mark.parametrize(("name", "args", "sig"), STOPS, ids=[f"{c[0]}-{c[2].name}" for c in STOPS])
def test_a_signal_to_the_group_closes_every_gevent_workers_pool(
    name: str, args: list[str], sig: signal.Signals, dsn: str, db: psycopg.Connection, tmp_path: Path
) -> None:
    """As systemd and Ctrl-C stop it: each of the 4 gevent workers closes its pool; no traceback; no backend left."""
    # A signal that reaches a gevent worker before gunicorn installed its handlers (it is still patching) is lost.
    closed, log = stop_group(
        name, args, WSGI, sig, dsn, tmp_path, booted=lambda log: log.count("after gevent patched") == 4
    )
    assert len(closed) == 4, log[-4000:]
    # gunicorn's gevent worker runs SIGINT/SIGQUIT's sys.exit(0) in a spawned greenlet, which gevent reports
    # ("... failed with SystemExit"), with or without forkhooks: the only traceback allowed.
    assert log.count("Traceback") == log.count("failed with SystemExit"), log[-4000:]
    assert "forkhooks: " not in "".join(line for line in log.splitlines() if "failed" in line), log[-4000:]
    poll(lambda: app_backends(db) == 0, timeout=5, what="all app backends gone after the stop")
