"""MySQL/MariaDB fixture: a private mariadbd (Debian's) or FORKHOOKS_TEST_MYSQL_DSN, started when a test asks."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def mysql_dsn() -> Iterator[str]:
    """A MySQL/MariaDB server for the whole run: FORKHOOKS_TEST_MYSQL_DSN (a mysql:// URL), else a private mariadbd."""
    from ..mariadb import available

    with available() as dsn:
        if dsn is None:
            pytest.skip("mariadbd not found (Debian: apt-get install mariadb-server; scripts/test installs it)")
        yield dsn


@pytest.fixture
def row_lock(mysql_dsn: str) -> Iterator[None]:
    """The test holds row 1 of the table the stuck query locks (FOR UPDATE), for the test's length."""
    from ..mariadb import connect
    from ..project.mysqlreap_jobs import TABLE

    conn = connect(mysql_dsn)
    try:
        with conn.cursor() as cur:
            cur.execute(f"CREATE TABLE IF NOT EXISTS {TABLE} (id INT PRIMARY KEY) ENGINE=InnoDB")
            cur.execute(f"INSERT IGNORE INTO {TABLE} VALUES (1)")
            cur.execute("BEGIN")
            cur.execute(f"SELECT id FROM {TABLE} WHERE id = 1 FOR UPDATE")
        yield
    finally:
        conn.close()


@pytest.fixture
def server_up_a_while(mysql_dsn: str) -> None:
    """Wait (bounded) until the server has run 3 s: a session made within about a second of its start is never
    acted on (Uptime counts whole seconds, so it cannot be told from one made before a restart), and a fresh
    test server is that young when the first test starts."""
    from ..mysqlreap import uptime
    from ..servers import poll

    poll(lambda: uptime(mysql_dsn) >= 3, timeout=10, what="the MySQL server up for 3 s")


@pytest.fixture(scope="module")
def migrated(mysql_dsn: str, redis_socket: Path) -> str:
    """django-q2's tables on the MariaDB (its monitor saves every result), created once per module."""
    from ..mysqlrunners import manage, runner_env

    env = runner_env(mysql_dsn, redis_socket, app=False)
    manage(mysql_dsn, env, "-m", "django", "migrate", "django_q", "--noinput")
    return mysql_dsn


@pytest.fixture
def broker(redis_socket: Path, migrated: str) -> Path:
    """The session's Redis, emptied: no job or answer of an earlier test is left."""
    from ..jobrunners import client

    client(redis_socket).flushall()
    return redis_socket
