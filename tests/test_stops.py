"""Stopped as systemd and a terminal stop things: one signal to the whole process group.

`systemctl stop` (KillMode=control-group) sends SIGTERM to every process of the service, and
Ctrl-C sends SIGINT to every process of the terminal's foreground group: the master and each
worker get the signal at once. Every worker must still close its pool (Terminate sent, backends
freed at once) and log it, whatever its class.
"""

from __future__ import annotations

import signal
from pathlib import Path

import psycopg
import pytest

from .harness import app_backends
from .servers import ASGI, WSGI, poll, stop_group

HOOKS = ["-c", "python:forkhooks.gunicorn"]

CASES = [
    ("sync", [*HOOKS, "-k", "sync"], WSGI, signal.SIGTERM),
    ("sync", [*HOOKS, "-k", "sync"], WSGI, signal.SIGINT),
    ("gthread", [*HOOKS, "-k", "gthread", "--threads", "4"], WSGI, signal.SIGTERM),
    ("asgi", [*HOOKS, "-k", "asgi"], ASGI, signal.SIGINT),
    ("uvicorn", [*HOOKS, "-k", "uvicorn_worker.UvicornWorker"], ASGI, signal.SIGTERM),
    ("uvicorn", [*HOOKS, "-k", "uvicorn_worker.UvicornWorker"], ASGI, signal.SIGINT),
    ("k-uvicorn", ["-k", "forkhooks.workers.UvicornWorker"], ASGI, signal.SIGTERM),
    ("k-sync", ["-k", "forkhooks.workers.SyncWorker"], WSGI, signal.SIGINT),
]


@pytest.mark.e2e
@pytest.mark.parametrize(("name", "args", "app", "sig"), CASES, ids=[f"{c[0]}-{c[3].name}" for c in CASES])
def test_a_signal_to_the_group_closes_every_workers_pool(
    name: str, args: list[str], app: str, sig: signal.Signals, dsn: str, db: psycopg.Connection, tmp_path: Path
) -> None:
    """Each of the 4 workers closes its pool and logs it; no traceback; no backend left."""
    closed, log = stop_group(name, args, app, sig, dsn, tmp_path)
    assert len(closed) == 4, log[-4000:]
    assert "Traceback" not in log, log[-4000:]
    poll(lambda: app_backends(db) == 0, timeout=5, what="all app backends gone after the stop")


@pytest.mark.e2e
def test_control_uvicorn_workers_die_by_the_signal_before_worker_exit(dsn: str, tmp_path: Path) -> None:
    """Without forkhooks' handler, uvicorn re-raises the signal with the default action: no worker closes."""
    args = [
        "-c",
        str(Path(__file__).parent / "project" / "gunicorn_warm_only.py"),
        "-k",
        "uvicorn_worker.UvicornWorker",
    ]
    closed, log = stop_group("uvicorn", args, ASGI, signal.SIGTERM, dsn, tmp_path)
    assert closed == set(), log[-4000:]
