"""MySQL/MariaDB fixture: a private mariadbd (Debian's) or FORKHOOKS_TEST_MYSQL_DSN, started when a test asks."""

from __future__ import annotations

from collections.abc import Iterator

import pytest


@pytest.fixture(scope="session")
def mysql_dsn() -> Iterator[str]:
    """A MySQL/MariaDB server for the whole run: FORKHOOKS_TEST_MYSQL_DSN (a mysql:// URL), else a private mariadbd."""
    from ..mariadb import available

    with available() as dsn:
        if dsn is None:
            pytest.skip("mariadbd not found (Debian: apt-get install mariadb-server; scripts/test installs it)")
        yield dsn
