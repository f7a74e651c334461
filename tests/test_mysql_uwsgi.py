"""MySQL/MariaDB behind real uWSGI (pyuwsgi): 4 workers forked from a master that ran the start-up query."""

from __future__ import annotations

from pathlib import Path

import pytest

from . import mariadb
from .record import record
from .servers import Server, load, poll, start
from .uwsgiservers import UWSGI

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

REQUESTS = 300
SETTINGS = "tests.project.mysqlsite.settings"  # explicit: never whatever the test process's environment holds


def serve(mysql_dsn: str, tmp_path: Path, *, forkhooks: bool) -> Server:
    """uWSGI's default prefork (the master loads the app) on the MySQL site, mysqlclient."""
    lines = ["[uwsgi]", "master = true", "processes = 4", "enable-threads = true"]
    lines += ["import = forkhooks.uwsgi"] if forkhooks else []
    lines += ["module = tests.project.mysqlsite.wsgi:application", "need-app = true"]
    lines += [f"http-socket = {tmp_path / 'app.sock'}", "die-on-term = true", "disable-logging = true"]
    ini = tmp_path / "uwsgi.ini"
    ini.write_text("\n".join(lines) + "\n")
    argv = [*UWSGI, "--ini", str(ini), "--worker-reload-mercy", "10"]
    return start(argv, mysql_dsn, tmp_path, env={"FORKHOOKS_MYSQL_DSN": mysql_dsn, "DJANGO_SETTINGS_MODULE": SETTINGS})


def test_uwsgi_workers_get_their_own_rows(mysql_dsn: str, tmp_path: Path) -> None:
    """With forkhooks.uwsgi: 0 failed, 0 wrong, no traceback, no session left or aborted at the stop."""
    poll(lambda: mariadb.sessions(mysql_dsn) == [], timeout=10, what="no session left by an earlier test")
    aborted = mariadb.aborted_clients(mysql_dsn)
    server = serve(mysql_dsn, tmp_path, forkhooks=True)
    run = load(server, REQUESTS)
    record("mysql-uwsgi", "mysqlclient", run.results)
    assert (run.results.failed, run.results.wrong) == (0, 0), run.results.summary()
    assert "Traceback" not in server.log(), server.log()[-3000:]
    poll(lambda: mariadb.sessions(mysql_dsn) == [], timeout=10, what="every app session gone after the stop")
    assert mariadb.aborted_clients(mysql_dsn) == aborted


def test_control_uwsgi_workers_share_the_masters_session(mysql_dsn: str, tmp_path: Path) -> None:
    """Without forkhooks the workers answer on the master's start-up session."""
    run = load(serve(mysql_dsn, tmp_path, forkhooks=False), REQUESTS, control=True)
    record("mysql-uwsgi-control", "mysqlclient", run.results)
    assert run.results.failed + run.results.wrong > 0, run.results.summary()
