"""MySQL/MariaDB behind real uWSGI (pyuwsgi): 4 workers forked from a master that ran the start-up query."""

from __future__ import annotations

from pathlib import Path

import pytest

from . import mariadb
from .record import record
from .servers import load, poll
from .uwsgiservers import serve_mysql

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

REQUESTS = 300


def test_uwsgi_workers_get_their_own_rows(mysql_dsn: str, tmp_path: Path) -> None:
    """With forkhooks.uwsgi: 0 failed, 0 wrong, no traceback, no session left or aborted at the stop."""
    poll(lambda: mariadb.sessions(mysql_dsn) == [], timeout=10, what="no session left by an earlier test")
    aborted = mariadb.aborted_clients(mysql_dsn)
    server = serve_mysql(mysql_dsn, tmp_path, forkhooks=True)
    run = load(server, REQUESTS)
    record("mysql-uwsgi", "mysqlclient", run.results)
    assert (run.results.failed, run.results.wrong) == (0, 0), run.results.summary()
    assert "Traceback" not in server.log(), server.log()[-3000:]
    poll(lambda: mariadb.sessions(mysql_dsn) == [], timeout=10, what="every app session gone after the stop")
    assert mariadb.aborted_clients(mysql_dsn) == aborted


def test_control_uwsgi_workers_share_the_masters_session(mysql_dsn: str, tmp_path: Path) -> None:
    """Without forkhooks the workers answer on the master's start-up session."""
    run = load(serve_mysql(mysql_dsn, tmp_path, forkhooks=False), REQUESTS, control=True)
    record("mysql-uwsgi-control", "mysqlclient", run.results)
    assert run.results.failed + run.results.wrong > 0, run.results.summary()
