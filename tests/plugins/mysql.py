"""MySQL/MariaDB fixture: a private mariadbd (Debian's) or FORKHOOKS_TEST_MYSQL_DSN, started when a test asks."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest


@pytest.fixture(scope="session")
def mysql_dsn() -> Iterator[str]:
    """A MySQL/MariaDB server for the whole run: FORKHOOKS_TEST_MYSQL_DSN (a mysql:// URL), else a private mariadbd."""
    external = os.environ.get("FORKHOOKS_TEST_MYSQL_DSN")
    if external:
        yield external
        return
    from ..mariadb import MariaDB, find_mariadbd

    binary = find_mariadbd()
    if binary is None:
        pytest.skip("mariadbd not found (Debian: apt-get install mariadb-server; scripts/test installs it)")
    server = MariaDB(binary)
    try:
        yield server.dsn
    finally:
        server.stop()
