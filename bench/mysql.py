"""The MariaDB of bench/run.py's MySQL section: --mysql-dsn, else FORKHOOKS_TEST_MYSQL_DSN, else the tests' mariadbd."""

from __future__ import annotations

from importlib import metadata

from forkhooks.demo.process import poll
from tests import mariadb

# The MySQL tests' project: Django's MySQL backend (mysqlclient) with CONN_MAX_AGE=None, and a WSGI
# module that runs a start-up query, so a preloading master holds an open session when it forks.
SETTINGS = "tests.project.mysqlsite.settings"
WSGI = "tests.project.mysqlsite.wsgi:application"

available = mariadb.available


def sessions(dsn: str) -> int:
    """Client sessions on the server, other than the one asking."""
    return len(mariadb.sessions(dsn))


def wait_idle(dsn: str) -> None:
    """Wait (bounded) until the previous round's sessions are gone, so each round counts only its own."""
    poll(lambda: sessions(dsn) == 0, timeout=20, what="no client session left on the MySQL server")


def versions(dsn: str, where: str) -> list[str]:
    """mysqlclient and its client library, the server's version and `where` it runs."""
    import MySQLdb

    with mariadb.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute("SELECT VERSION()")
        (server,) = cur.fetchone()
    return [
        f"- mysqlclient {metadata.version('mysqlclient')} (client library {MySQLdb._mysql.get_client_info()})",
        f"- server {server} ({where})",
    ]
