"""Pools users create themselves: forkhooks.track() under real gunicorn, and what track() accepts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg
import pytest

import forkhooks
from forkhooks.demo.loadgen import Results

from .harness import app_backends
from .record import record
from .servers import Server, gunicorn, load, poll, run_json, start

REQUESTS = 1000
APPS = ["psycopg2", "psycopg_pool", "sqlalchemy"]  # examples/plainwsgi/<kind>_app.py


def serve(dsn: str, tmp_path: Path, kind: str, **env: str) -> Server:
    """gunicorn --preload -w 4 with forkhooks' hooks, serving one plain WSGI app."""
    argv = gunicorn("-c", "python:forkhooks.gunicorn", "-k", "sync", f"plainwsgi.{kind}_app:application")
    return start(argv, dsn, tmp_path, env=env)


@pytest.mark.e2e
@pytest.mark.parametrize("kind", APPS)
def test_tracked_pool_serves_every_request_its_own_rows(
    kind: str, dsn: str, db: psycopg.Connection, tmp_path: Path
) -> None:
    """A pool created and used at import, tracked: 0 failed, 0 wrong rows, 4 workers, the master holds nothing."""
    server = serve(dsn, tmp_path, kind)
    run = load(server, REQUESTS)
    results, master, code = run.results, run.master_before, run.code
    poll(lambda: app_backends(db) == 0, timeout=5, what="all app backends gone after shutdown")
    record("track", kind, results, master_sockets=master)
    assert results.requests == REQUESTS
    assert (results.failed, results.wrong) == (0, 0), results.summary()
    assert len(results.pids) == 4, results.summary()
    assert master == 0, "when_ready closed the tracked pool in the master"
    assert code == 0, server.log()[-3000:]


@pytest.mark.e2e
@pytest.mark.parametrize("kind", APPS)
def test_control_untracked_pool_fails(kind: str, dsn: str, tmp_path: Path) -> None:
    """The same app and hooks without track(): workers share the master's sockets and requests fail."""
    run = load(serve(dsn, tmp_path, kind, FORKHOOKS_TRACK="0"), REQUESTS, control=True)
    record("track-control", kind, run.results, master_sockets=run.master_before)
    assert run.master_before > 0, "forkhooks cannot close a pool it does not know"
    assert run.results.failed + run.results.wrong > 0, run.results.summary()


def test_track_returns_the_object_and_refuses_what_it_cannot_reset() -> None:
    """track(pool) returns pool; anything else is a TypeError naming the supported kinds."""
    from psycopg2.pool import SimpleConnectionPool

    pool = SimpleConnectionPool(0, 1, "")  # minconn=0: nothing connects
    assert forkhooks.track(pool) is pool
    with pytest.raises(
        TypeError, match=r"psycopg_pool\.ConnectionPool.*psycopg2\.pool.*sqlalchemy\.Engine.*PerProcess"
    ):
        forkhooks.track(object())


# Without gunicorn: forkhooks.install() (no Django) and os.fork() children, one kind per run.
KINDS = ["psycopg2", "psycopg_pool", "null_pool", "async_pool", "sqlalchemy", "per_process"]
FORKS = 200


def plainforks(dsn: str, kind: str, *args: str) -> dict[str, Any]:
    """Run tests/project/plainforks.py for `kind` and return its JSON line of counts."""
    out: dict[str, Any] = run_json("tests.project.plainforks", kind, *args, dsn=dsn, timeout=180)[0]
    results = Results(
        requests=out["forks"], ok=out["ok"], failed=out["child_errors"], wrong=out["wrong"] + out["shared"]
    )
    record(
        "track-fork" if "--no-track" not in args else "track-fork-control",
        kind,
        results,
        parent_errors=out["parent_errors"],
    )
    return out


@pytest.mark.fork
@pytest.mark.parametrize("kind", KINDS)
def test_install_and_track_give_each_forked_child_its_own_connections(kind: str, dsn: str) -> None:
    """No Django: with install() and track(), 200 forked children each query on their own backend."""
    out = plainforks(dsn, kind, "--n", str(FORKS))
    assert out["answers"] == FORKS, out
    assert (out["ok"], out["wrong"], out["shared"], out["child_errors"]) == (FORKS, 0, 0, 0), out
    assert out["parent_errors"] == 0, out["parent_error"]


@pytest.mark.fork
@pytest.mark.parametrize("kind", [k for k in KINDS if k != "null_pool"])  # a null pool keeps no idle connection
def test_control_untracked_children_use_the_parents_connections(kind: str, dsn: str) -> None:
    """Without install()/track(), children run one at a time still answer from the parent's sockets, or fail."""
    out = plainforks(dsn, kind, "--n", "50", "--no-track", "--sequential")
    assert out["ok"] == 0, out
    assert out["shared"] + out["child_errors"] + out["wrong"] == 50, out
