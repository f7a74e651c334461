"""Database fixtures: a real PostgreSQL (embedded, or FORKHOOKS_TEST_DSN), an observer on it, pgbouncers in front.

Session-scoped and lazy: PostgreSQL starts when the first test asks for `dsn`, so the unit tier never starts it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    import psycopg


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
    import psycopg

    with psycopg.connect(dsn, autocommit=True, application_name="forkhooks-observer") as conn:
        yield conn


@pytest.fixture(scope="module")
def pgbouncers(dsn: str) -> Iterator[Callable[[str], Any]]:
    """Debian's pgbouncer in front of `dsn`, one per pool mode asked for, stopped at the module's end.

    Module scope: a pgbouncer keeps idle server connections, which other modules would count as the app's.
    """
    from ..pgbouncer import PgBouncer, find_pgbouncer

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
