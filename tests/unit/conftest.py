"""The unit tier: pure functions called in-process, no server, no subprocess (`scripts/test --unit`)."""

from __future__ import annotations

import pytest

# Fixtures that start a server or a process: a unit test that asks for one belongs in the end-to-end tier.
SERVER_FIXTURES = {"dsn", "db", "redis_socket", "pgbouncers", "own_pg", "own_database", "mysql_dsn"}


@pytest.fixture(autouse=True)
def _no_servers(request: pytest.FixtureRequest) -> None:
    """Fail a unit test that would start PostgreSQL, Redis or pgbouncer."""
    used = SERVER_FIXTURES.intersection(request.fixturenames)
    assert not used, f"a unit test starts no server; move it out of tests/unit (it uses {sorted(used)})"
