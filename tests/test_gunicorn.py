"""Real gunicorn, 4 preloaded workers, the example app, 1000 concurrent requests."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

from .harness import app_backends
from .record import record
from .servers import ASGI, WSGI, Server, load, poll, serve

REQUESTS = 1000

# (id, gunicorn arguments, app) — every way of enabling forkhooks, every worker class.
ENABLED = [
    ("conf-sync", ["-c", "gunicorn_conf/star.py", "-k", "sync"], WSGI),
    ("conf-gthread", ["-c", "gunicorn_conf/star.py", "-k", "gthread", "--threads", "4"], WSGI),
    ("conf-asgi", ["-c", "gunicorn_conf/star.py", "-k", "asgi"], ASGI),
    ("conf-uvicorn", ["-c", "gunicorn_conf/star.py", "-k", "uvicorn_worker.UvicornWorker"], ASGI),
    ("conf-own-hooks", ["-c", "gunicorn_conf/own_hooks.py", "-k", "sync"], WSGI),
    ("python-module", ["-c", "python:forkhooks.gunicorn", "-k", "sync"], WSGI),
    ("k-sync", ["-k", "forkhooks.workers.SyncWorker"], WSGI),
    ("k-gthread", ["-k", "forkhooks.workers.ThreadWorker", "--threads", "4"], WSGI),
    ("k-asgi", ["-k", "forkhooks.workers.ASGIWorker"], ASGI),
    ("k-uvicorn", ["-k", "forkhooks.workers.UvicornWorker"], ASGI),
    ("k-uvicorn-h11", ["-k", "forkhooks.workers.UvicornH11Worker"], ASGI),
]

CONTROLS = [
    ("sync", ["-k", "sync"], WSGI),
    ("gthread", ["-k", "gthread", "--threads", "4"], WSGI),
    ("asgi", ["-k", "asgi"], ASGI),
    ("uvicorn", ["-k", "uvicorn_worker.UvicornWorker"], ASGI),
]

NEEDS_NATIVE_ASGI = {"conf-asgi", "k-asgi", "asgi"}  # gunicorn.workers.gasgi: gunicorn >= 24


def serve_case(name: str, dsn: str, tmp_path: Path, args: list[str], app: str) -> Server:
    """serve() one parametrized case; a case of gunicorn's native asgi worker is skipped before gunicorn 24."""
    if name in NEEDS_NATIVE_ASGI:
        pytest.importorskip("gunicorn.workers.gasgi", reason="gunicorn's native asgi worker needs gunicorn >= 24")
    return serve(dsn, tmp_path, args, app)


@pytest.mark.e2e
@pytest.mark.parametrize(("name", "args", "app"), ENABLED, ids=[c[0] for c in ENABLED])
def test_every_request_gets_its_own_rows(
    name: str, args: list[str], app: str, dsn: str, db: psycopg.Connection, tmp_path: Path
) -> None:
    """With forkhooks: 0 failed, 0 wrong rows, all 4 workers serve, the master holds no connection."""
    server = serve_case(name, dsn, tmp_path, args, app)
    run = load(server, REQUESTS)
    poll(lambda: app_backends(db) == 0, timeout=5, what="all app backends gone after shutdown")
    results = run.results
    record("gunicorn", name, results, master_sockets=run.master_after)
    assert results.requests == REQUESTS
    assert (results.failed, results.wrong) == (0, 0), results.summary()
    assert len(results.pids) == 4, results.summary()
    assert (run.master_before, run.master_after) == (0, 0)
    assert run.code == 0, server.log()[-3000:]
    assert "forkhooks: worker" in server.log()


@pytest.mark.e2e
@pytest.mark.parametrize(("name", "args", "app"), CONTROLS, ids=[c[0] for c in CONTROLS])
def test_control_without_forkhooks_fails(
    name: str, args: list[str], app: str, dsn: str, db: psycopg.Connection, tmp_path: Path
) -> None:
    """The same run without forkhooks: shared sockets fail requests or leak rows."""
    run = load(serve_case(name, dsn, tmp_path, args, app), REQUESTS, control=True)
    record("gunicorn-control", name, run.results, master_sockets=run.master_before)
    assert run.master_before > 0, "the master keeps its start-up connection and pool"
    assert run.results.failed + run.results.wrong > 0, run.results.summary()
