"""Fixtures: a real PostgreSQL (embedded, or FORKHOOKS_TEST_DSN) and real servers."""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from collections.abc import Callable, Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

import psycopg
import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"


@pytest.fixture(scope="session")
def dsn() -> Iterator[str]:
    """A PostgreSQL server for the whole run: FORKHOOKS_TEST_DSN, else an embedded one."""
    external = os.environ.get("FORKHOOKS_TEST_DSN")
    if external:
        yield external
        return
    from forkhooks.demo.embedded import EmbeddedPostgres

    server = EmbeddedPostgres()
    try:
        yield server.dsn
    finally:
        server.stop()


@pytest.fixture
def db(dsn: str) -> Iterator[psycopg.Connection]:
    """An observer connection (autocommit) to inspect the server from outside."""
    with psycopg.connect(dsn, autocommit=True, application_name="forkhooks-observer") as conn:
        yield conn


@pytest.fixture(scope="session")
def redis_socket(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A private Redis (Debian's redis-server) on a Unix socket for Celery and RQ tests, stopped with the session."""
    from .redisserver import RedisServer, find_redis_server

    binary = find_redis_server()
    if binary is None:
        pytest.skip("redis-server not found (Debian: apt-get install redis-server; scripts/test installs it)")
    server = RedisServer(binary, tmp_path_factory.mktemp("redis"))
    try:
        yield server.socket
    finally:
        server.stop()


@pytest.fixture(scope="session")
def mysql_dsn() -> Iterator[str]:
    """A MySQL/MariaDB server for the whole run: FORKHOOKS_TEST_MYSQL_DSN (a mysql:// URL), else a private mariadbd."""
    external = os.environ.get("FORKHOOKS_TEST_MYSQL_DSN")
    if external:
        yield external
        return
    from .mariadb import MariaDB, find_mariadbd

    binary = find_mariadbd()
    if binary is None:
        pytest.skip("mariadbd not found (Debian: apt-get install mariadb-server; scripts/test installs it)")
    server = MariaDB(binary)
    try:
        yield server.dsn
    finally:
        server.stop()


@pytest.fixture(scope="module")
def pgbouncers(dsn: str) -> Iterator[Callable[[str], Any]]:
    """Debian's pgbouncer in front of `dsn`, one per pool mode asked for, stopped at the module's end.

    Module scope: a pgbouncer keeps idle server connections, which other modules would count as the app's.
    """
    from .pgbouncer import PgBouncer, find_pgbouncer

    binary = find_pgbouncer()
    if binary is None:
        pytest.skip("pgbouncer not found (Debian: apt-get install pgbouncer; scripts/test installs it)")
    started: dict[str, PgBouncer] = {}

    def get(mode: str) -> PgBouncer:
        if mode not in started:
            started[mode] = PgBouncer(binary, dsn, mode)
        return started[mode]

    try:
        yield get
    finally:
        for bouncer in started.values():
            bouncer.stop()


def app_backends(observer: psycopg.Connection) -> int:
    """Client backends on the server other than observers'."""
    row = observer.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'"
        " AND application_name <> 'forkhooks-observer'"
    ).fetchone()
    assert row is not None
    return int(row[0])


def child_env(dsn: str, **extra: str) -> dict[str, str]:
    """Environment for a subprocess running the example project."""
    env = dict(os.environ, FORKHOOKS_DSN=dsn, PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = os.pathsep.join([str(EXAMPLES), str(ROOT), env.get("PYTHONPATH", "")])
    env.update(extra)
    return env


PYTHON = sys.executable


def pytest_sessionstart(session: pytest.Session) -> None:
    from .record import RESULTS

    (RESULTS / "measured.jsonl").unlink(missing_ok=True)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    from .record import table

    lines = table()
    if lines:
        terminalreporter.section("forkhooks: measured")
        for line in lines:
            terminalreporter.write_line(line)


# --- Supported versions: one JSON line per run in support.jsonl, read by scripts/support-table. ---
SUPPORT_DISTS = (
    "django",
    "gunicorn",
    "psycopg",
    "psycopg-pool",
    "psycopg2",
    "uvicorn-worker",
    "pyuwsgi",
    "gevent",
    "celery",
    "rq",
    "huey",
    "django-q2",
    "wagtail",
)
_SUPPORT: dict[str, Any] = {"started": time.time(), "postgresql": None}


def pytest_runtest_call(item: pytest.Item) -> None:
    """Note the PostgreSQL server's version the first time a test uses the `dsn` fixture."""
    dsn = getattr(item, "funcargs", {}).get("dsn")
    if dsn and _SUPPORT["postgresql"] is None:
        try:  # as an observer: tests do not count it among the app's backends
            with psycopg.connect(dsn, connect_timeout=5, application_name="forkhooks-observer") as conn:
                _SUPPORT["postgresql"] = conn.execute("SHOW server_version").fetchall()[0][0].split()[0]
        except psycopg.Error:
            _SUPPORT["postgresql"] = "?"


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Append what ran (versions, selection, counts, skip reasons) to support.jsonl."""
    from .record import RESULTS

    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is None or session.config.option.collectonly:
        return
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for dist in SUPPORT_DISTS:
        versions[dist] = None
        for name in (dist, f"{dist}-binary"):  # psycopg2 is usually psycopg2-binary
            try:
                versions[dist] = metadata.version(name)
                break
            except metadata.PackageNotFoundError:
                pass
    versions["postgresql"] = _SUPPORT["postgresql"]
    counts = {k: len(reporter.stats.get(k, [])) for k in ("passed", "failed", "error", "skipped", "deselected")}
    reasons: dict[str, int] = {}
    for report in reporter.stats.get("skipped", []):
        reason = str(report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr)
        reason = reason.removeprefix("Skipped: ")
        reasons[reason] = reasons.get(reason, 0) + 1
    row = {
        "session": os.environ.get("NOX_CURRENT_SESSION"),
        "finished": time.strftime("%Y-%m-%d %H:%M:%S"),
        "seconds": round(time.time() - _SUPPORT["started"]),
        "exitstatus": int(exitstatus),
        "k": session.config.option.keyword or None,
        "m": session.config.option.markexpr or None,
        "args": list(session.config.invocation_params.args),
        "versions": versions,
        **counts,
        "skip_reasons": reasons,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    with open(RESULTS / "support.jsonl", "a") as f:
        f.write(json.dumps(row) + "\n")
