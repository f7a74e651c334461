"""Fixtures: a real PostgreSQL (embedded, or FORKHOOKS_TEST_DSN) and real servers."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

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
    from forkhooks._embedded import EmbeddedPostgres

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
