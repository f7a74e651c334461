"""At exit, close() ends every thread's connection (MySQL; PostgreSQL without a pool) and cancels a running query."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from typing import Any

import psycopg
import pytest

from . import mariadb
from .harness import PYTHON, ROOT, child_env
from .servers import poll

pytestmark = pytest.mark.slow

MYSQL = "tests.project.mysqlsite.settings"
POSTGRES = "tests.project.settings"  # psycopg 3, CONN_MAX_AGE=None, no pool


class Threads:
    """tests/project/threadclose.py running: its report, then stopped when the test has looked."""

    def __init__(self, dsn: str, settings: str, *flags: str, **env: str) -> None:
        self.proc = subprocess.Popen(
            [PYTHON, "-m", "tests.project.threadclose", *flags],
            cwd=ROOT,
            env=child_env(dsn, DJANGO_SETTINGS_MODULE=settings, **env),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            self.stop()
            raise AssertionError(self.stderr)
        self.report: dict[str, Any] = json.loads(line)

    def stop(self) -> None:
        """Let the script's threads go and wait for it."""
        _, self.stderr = self.proc.communicate(timeout=60)


def mysql_alive(dsn: str) -> Callable[[list[int]], set[int]]:
    return lambda ids: {i for i, _ in mariadb.sessions(dsn)} & set(ids)


def pg_alive(observer: psycopg.Connection) -> Callable[[list[int]], set[int]]:
    def alive(ids: list[int]) -> set[int]:
        rows = observer.execute("SELECT pid FROM pg_stat_activity WHERE pid = ANY(%s)", [ids]).fetchall()
        return {int(r[0]) for r in rows}

    return alive


def run(dsn: str, settings: str, alive: Callable[[list[int]], set[int]], *flags: str, **env: str) -> dict[str, Any]:
    """Run the script; its report plus which thread sessions were still on the server after close()."""
    threads = Threads(dsn, settings, *flags, **env)
    try:
        report = threads.report
        sessions = report["sessions"]
        assert len(sessions) == 3, report
        if "--this-thread-only" in flags:
            report["alive"] = sorted(alive(sessions))
        else:
            poll(lambda: not alive(sessions), timeout=5, what="every thread's session gone")
            report["alive"] = []
    finally:
        threads.stop()
    assert "Traceback" not in threads.stderr, threads.stderr[-3000:]
    return report


@pytest.mark.parametrize("driver", ["mysqlclient", "pymysql"])
def test_mysql_every_threads_connection_is_closed(mysql_dsn: str, driver: str) -> None:
    """MySQL: the three threads' sessions end at close(), none left to be aborted at exit."""
    out = run(mysql_dsn, MYSQL, mysql_alive(mysql_dsn), FORKHOOKS_MYSQL_DSN=mysql_dsn, FORKHOOKS_MYSQL_DRIVER=driver)
    assert out["closed"] == 3 and out["failures"] == 0, out


def test_control_mysql_close_of_one_thread_leaves_the_others(mysql_dsn: str) -> None:
    """Control: a close that sees only its own thread leaves the three sessions open."""
    env = {"FORKHOOKS_MYSQL_DSN": mysql_dsn}
    out = run(mysql_dsn, MYSQL, mysql_alive(mysql_dsn), "--this-thread-only", **env)
    assert len(out["alive"]) == 3, out


def test_postgres_without_pool_every_threads_connection_is_closed(dsn: str, db: psycopg.Connection) -> None:
    """PostgreSQL, CONN_MAX_AGE=None, no pool: the same."""
    out = run(dsn, POSTGRES, pg_alive(db))
    assert out["closed"] == 3 and out["failures"] == 0, out


def test_control_postgres_close_of_one_thread_leaves_the_others(dsn: str, db: psycopg.Connection) -> None:
    """Control on PostgreSQL: the threads' backends stay."""
    out = run(dsn, POSTGRES, pg_alive(db), "--this-thread-only")
    assert len(out["alive"]) == 3, out


@pytest.mark.parametrize("driver", ["mysqlclient", "pymysql"])
def test_mysql_running_query_is_killed_at_close(mysql_dsn: str, driver: str) -> None:
    """A thread in SELECT SLEEP(30) when close() runs: KILL QUERY ends it within seconds, nothing logged as an error."""
    env = {"FORKHOOKS_MYSQL_DSN": mysql_dsn, "FORKHOOKS_MYSQL_DRIVER": driver}
    out = run(mysql_dsn, MYSQL, mysql_alive(mysql_dsn), "--sleeper", **env)
    assert out["seconds"] < 10, out
    # MariaDB ends a killed query with error 1317 (MySQL's SLEEP() returns 1 instead)
    assert out["result"] == "1" or "1317" in out["result"], out
    assert out["failures"] == 0, out
