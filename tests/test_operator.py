"""Operator features: connection budget, application_name per process, `connections`, system checks."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import psycopg
import pytest

from forkhooks._tools.appname import compose

from .harness import app_backends, django_check, forkhooks_cli, killed_client
from .servers import WSGI, booted_workers, poll, serve


def names(db: psycopg.Connection) -> list[str]:
    rows = db.execute(
        "SELECT application_name FROM pg_stat_activity WHERE backend_type = 'client backend'"
        " AND application_name <> 'forkhooks-observer'"
    ).fetchall()
    return sorted(r[0] for r in rows)


# -- connection budget ------------------------------------------------------------------------


def test_check_fails_with_the_numbers_when_over_budget(dsn: str) -> None:
    """30 workers x pool max_size 4 = 120 > what the server allows: exit 1, numbers and the fix."""
    done = forkhooks_cli(
        dsn, "check", "--workers", "30", "--settings", "tests.project.settings_checks", CASE_POOL_MAX="4"
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert "30 workers x 4 (pool max_size 'default') = 120 connections" in done.stdout
    assert re.search(r"server allows \d+ \(max_connections=100 - ", done.stdout)
    assert "fix: lower workers or pool max_size" in done.stdout


def test_check_passes_when_it_fits(dsn: str) -> None:
    """4 gthread workers x 4 threads without a pool = 16 connections: fits, exit 0."""
    done = forkhooks_cli(
        dsn, "check", "--workers", "4", "--threads", "4", "--settings", "tests.project.settings_checks"
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "4 workers x 4 (threads, 'default' without pool) = 16 connections" in done.stdout
    assert ": fits" in done.stdout


@pytest.mark.e2e
def test_gunicorn_master_warns_when_over_budget(dsn: str, db: psycopg.Connection, tmp_path: Path) -> None:
    """The master computes 4 workers x max_size 30 = 120 at when_ready and warns, and still serves."""
    server = serve(
        dsn,
        tmp_path,
        ["-c", "python:forkhooks.gunicorn"],
        WSGI,
        env={"FORKHOOKS_EXAMPLE_POOL_MAX": "30", "FORKHOOKS_WARM": "0"},
    )
    try:
        log = server.log()
    finally:
        server.stop()
    line = next(line for line in log.splitlines() if "connection budget" in line)
    assert "[WARNING]" in line
    assert "4 workers x 30 (pool max_size 'default') = 120 connections" in line
    assert "over budget. Fix: lower workers or pool max_size" in line


# -- application_name -------------------------------------------------------------------------


@pytest.mark.e2e
@pytest.mark.parametrize("prefix", [None, "shop"])
def test_each_worker_names_its_connections(
    dsn: str, db: psycopg.Connection, tmp_path: Path, prefix: str | None
) -> None:
    """Backends carry <prefix>:worker:<pid>@<host> of the worker that holds them; the master holds none."""
    worker_dsn = (
        f"{dsn}&application_name={prefix}"
        if prefix and "?" in dsn
        else (f"{dsn} application_name={prefix}" if prefix else dsn)
    )
    server = serve(worker_dsn, tmp_path, ["-c", "python:forkhooks.gunicorn"], WSGI)
    try:
        poll(lambda: app_backends(db) == 8, timeout=15, what="4 workers x 2 warm connections")
        seen = names(db)
        pids = booted_workers(server.log())
    finally:
        server.stop()
    expected = sorted(compose(prefix, "worker", pid) for pid in pids for _ in range(2))
    assert seen == expected


@pytest.mark.e2e
def test_application_names_can_be_turned_off(dsn: str, db: psycopg.Connection, tmp_path: Path) -> None:
    """FORKHOOKS_APPLICATION_NAME=0 leaves application_name alone."""
    server = serve(dsn, tmp_path, ["-c", "python:forkhooks.gunicorn"], WSGI, env={"FORKHOOKS_APPLICATION_NAME": "0"})
    try:
        poll(lambda: app_backends(db) == 8, timeout=15, what="4 workers x 2 warm connections")
        seen = names(db)
    finally:
        server.stop()
    assert not [n for n in seen if ":worker:" in n]


# -- forkhooks connections --------------------------------------------------------------------


def test_connections_groups_by_owner_and_flags_what_needs_a_look(dsn: str, db: psycopg.Connection) -> None:
    """Orphans (owner pid gone, client end closed), idle-in-transaction backends and a master's are flagged; exit 1."""
    alive = os.getpid()
    with (
        killed_client(dsn, db) as (gone, _),
        psycopg.connect(dsn, application_name=compose(None, "master", alive)) as master,
        psycopg.connect(dsn, application_name=compose(None, "worker", alive)) as busy,
    ):
        master.execute("SELECT 1")
        busy.execute("SELECT 1")  # psycopg opens a transaction: idle in transaction
        done = forkhooks_cli(dsn, "connections", "--dsn", dsn)
    assert done.returncode == 1, done.stdout + done.stderr
    out = done.stdout
    assert re.search(rf"worker {gone} \(forkhooks\): 1 backend\(s\)  \[ORPHAN: owner pid gone", out), out
    assert re.search(rf"master {alive} \(forkhooks\): 1 backend\(s\)  \[held by a master", out), out
    assert re.search(rf"worker {alive} \(forkhooks\): 1 backend\(s\)  \[idle in transaction\]", out), out


def test_a_name_is_not_proof_of_an_orphan(dsn: str, db: psycopg.Connection) -> None:
    """A backend named after a gone pid but held by a live process (a subprocess that inherited PGAPPNAME,
    a pooler) is grouped under its holder, no verdict: exit 0."""
    gone = subprocess.Popen(["true"])
    gone.wait(10)
    with psycopg.connect(dsn, autocommit=True, application_name=compose(None, "worker", gone.pid)) as inherited:
        inherited.execute("SELECT 1")
        done = forkhooks_cli(dsn, "connections", "--dsn", dsn)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "ORPHAN" not in done.stdout
    assert re.search(rf"via pid {os.getpid()} \(\S+\): 1 backend\(s\)  \[.*no verdict", done.stdout), done.stdout
    assert f"last named {compose(None, 'worker', gone.pid)}" in done.stdout


# -- system checks ----------------------------------------------------------------------------


def test_w001_persistent_connections_under_asgi(dsn: str) -> None:
    """CONN_MAX_AGE=60 with an ASGI application: forkhooks.W001; CONN_MAX_AGE=0: silent."""
    warned = django_check(dsn, CASE_ASGI="1", CASE_CONN_MAX_AGE="60")
    quiet = django_check(dsn, CASE_ASGI="1", CASE_CONN_MAX_AGE="0")
    assert "forkhooks.W001" in warned.stderr
    assert "forkhooks.W001" not in quiet.stderr + quiet.stdout


def test_w002_pooling_under_gunicorn_without_the_hooks(dsn: str) -> None:
    """Pooling in a gunicorn process without forkhooks' hooks: forkhooks.W002; with them: silent."""
    # The checks run inside the server process; importing gunicorn's arbiter is how they tell.
    warned = django_check(dsn, before="import gunicorn.arbiter", CASE_POOL_MAX="4")
    quiet = django_check(dsn, before="import gunicorn.arbiter, forkhooks.gunicorn", CASE_POOL_MAX="4")
    assert "forkhooks.W002" in warned.stderr
    assert "from forkhooks.gunicorn import *" in warned.stderr
    assert "forkhooks.W002" not in quiet.stderr + quiet.stdout


def test_w003_connection_budget_with_database_checks(dsn: str) -> None:
    """`check --database default`: W003 when 30 workers x 4 is over budget, I001 with the sum otherwise."""
    over = django_check(dsn, "--database", "default", CASE_POOL_MAX="4", WEB_CONCURRENCY="30")
    fits = django_check(dsn, "--database", "default", CASE_POOL_MAX="4", WEB_CONCURRENCY="4")
    assert "forkhooks.W003" in over.stderr and "= 120 connections" in over.stderr
    assert "forkhooks.I001" in fits.stdout + fits.stderr and "= 16 connections" in fits.stdout + fits.stderr
