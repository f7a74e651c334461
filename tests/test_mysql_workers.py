"""MySQL/MariaDB behind gunicorn's other worker classes: asgi, uvicorn-worker, gevent (4 preloaded workers).

CONN_MAX_AGE=None and a start-up query in the master, as tests/test_mysql_gunicorn.py. gevent runs on
PyMySQL: it reads through Python's socket module, which gevent patches, so a query yields to the other
greenlets; mysqlclient reads in C and blocks the worker's hub for the query's length (shown below).
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from forkhooks.demo import loadgen

from . import mariadb
from .jobrunners import comes_true
from .mysqlhttp import sleeping, tagged
from .record import record
from .servers import Server, answers_at_all, gevent_booted, gunicorn, poll, start, wait_workers

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

REQUESTS = 200
SETTINGS = "tests.project.mysqlsite.settings"  # explicit: never whatever the test process's environment holds
WSGI = "tests.project.mysqlsite.wsgi:application"
ASGI = "tests.project.mysqlsite.asgi:application"
FORKHOOKS = ["-c", "python:forkhooks.gunicorn"]

# (id, gunicorn arguments, app, driver)
ENABLED = [
    ("asgi", [*FORKHOOKS, "-k", "asgi"], ASGI, "mysqlclient"),
    ("uvicorn", [*FORKHOOKS, "-k", "uvicorn_worker.UvicornWorker"], ASGI, "mysqlclient"),
    ("k-uvicorn", ["-k", "forkhooks.workers.UvicornWorker"], ASGI, "mysqlclient"),
    # forkhooks' own worker classes, no config file (sync's and gthread's controls: tests/test_mysql_gunicorn.py)
    ("k-sync", ["-k", "forkhooks.workers.SyncWorker"], WSGI, "mysqlclient"),
    ("k-gthread-pymysql", ["-k", "forkhooks.workers.ThreadWorker", "--threads", "4"], WSGI, "pymysql"),
    ("k-asgi", ["-k", "forkhooks.workers.ASGIWorker"], ASGI, "mysqlclient"),
    ("k-gevent-pymysql", ["-k", "forkhooks.workers.GeventWorker"], WSGI, "pymysql"),
    ("k-gevent-mysqlclient", ["-k", "forkhooks.workers.GeventWorker"], WSGI, "mysqlclient"),
]
CONTROLS = [
    ("asgi", ["-k", "asgi"], ASGI, "mysqlclient"),
    ("uvicorn", ["-k", "uvicorn_worker.UvicornWorker"], ASGI, "mysqlclient"),
    ("gevent-pymysql", ["-k", "gevent"], WSGI, "pymysql"),
]


def serve(mysql_dsn: str, tmp_path: Path, name: str, args: list[str], app: str, driver: str) -> Server:
    """gunicorn --preload -w 4 on the MySQL site; a gevent server only once its 4 workers patched."""
    if "asgi" in args:
        pytest.importorskip("gunicorn.workers.gasgi", reason="gunicorn's native asgi worker needs gunicorn >= 24")
    env = {"FORKHOOKS_MYSQL_DSN": mysql_dsn, "FORKHOOKS_MYSQL_DRIVER": driver, "DJANGO_SETTINGS_MODULE": SETTINGS}
    if "gevent" in name and "forkhooks" not in " ".join(args):
        # Without forkhooks not even /health answers 200 (Django's request_finished handler touches the
        # wrapper the greenlets share): wait for any HTTP answer instead.
        server = Server(gunicorn(*args, app), mysql_dsn, tmp_path, env=env)
        poll(lambda: answers_at_all(server), timeout=30, what="gunicorn answering, with any status")
        return server
    server = start(gunicorn(*args, app), mysql_dsn, tmp_path, env=env)
    return gevent_booted(server) if "gevent" in name else server


def problems(log: str) -> list[str]:
    """Lines of a server log that show a failure: an ERROR or a traceback."""
    return [line for line in log.splitlines() if "ERROR" in line or "Traceback" in line]


def most_sleeping_at_once(mysql_dsn: str, server: Server, clients: int = 8, seconds: int = 2) -> int:
    """Send `clients` concurrent /sleep requests to the 4 workers; the most SLEEPs the server ran at once."""
    sender = threading.Thread(
        target=lambda: loadgen.run(
            server.target, clients, concurrency=clients, path=f"/sleep?seconds={seconds}&then="
        )  # loadgen appends ?tag=
    )
    sender.start()
    most = 0

    def over_four() -> bool:
        nonlocal most
        most = max(most, sleeping(mysql_dsn))
        return most > 4  # 4 workers: more means some worker ran two queries at once

    try:
        comes_true(over_four, timeout=seconds + 1)
    finally:
        sender.join()
    return most


@pytest.mark.parametrize(("name", "args", "app", "driver"), ENABLED, ids=[c[0] for c in ENABLED])
def test_workers_get_their_own_sessions(
    name: str, args: list[str], app: str, driver: str, mysql_dsn: str, tmp_path: Path
) -> None:
    """With forkhooks: the master's start-up session closed before the fork; 0 failed, 0 wrong, 4 workers serve,
    no session answers two workers; every session closed at the stop (no aborted connection)."""
    poll(lambda: mariadb.sessions(mysql_dsn) == [], timeout=10, what="no session left by an earlier test")
    aborted = mariadb.aborted_clients(mysql_dsn)
    server = serve(mysql_dsn, tmp_path, name, args, app, driver)
    try:
        wait_workers(server)  # all 4 up before the load: a late one would serve nothing
        held = len(mariadb.sessions(mysql_dsn))  # before any request: the master's start-up session, if kept
        results, owners = tagged(server, REQUESTS)
        overlap = most_sleeping_at_once(mysql_dsn, server) if "gevent" in name else None
    finally:
        code = server.stop()
    poll(lambda: mariadb.sessions(mysql_dsn) == [], timeout=10, what="every app session gone after the stop")
    aborted = mariadb.aborted_clients(mysql_dsn) - aborted
    record("mysql-workers", name, results, held=held, sessions=len(owners), aborted=aborted, sleeping_at_once=overlap)
    assert held == 0, server.log()[-3000:]
    assert (results.failed, results.wrong) == (0, 0), (results.summary(), server.log()[-3000:])
    assert len(results.pids) == 4, results.summary()
    assert all(len(pids) == 1 for pids in owners.values()), owners  # no session serves two workers
    assert code == 0, server.log()[-3000:]
    assert problems(server.log()) == [], server.log()[-3000:]
    if name != "k-gevent-pymysql":
        assert aborted == 0, server.log()[-3000:]
    # else: a greenlet's Django connection lives as long as its greenlet, one request (CONN_MAX_AGE does not
    # carry over), and PyMySQL says no goodbye when it is garbage-collected: the server counts those as
    # aborted, with or without forkhooks (mysqlclient's finalizer sends COM_QUIT). forkhooks closes the rest.
    if overlap is not None:
        assert "after gevent patched: Django connections per greenlet" in server.log()
        warned = "mysqlclient blocks every greenlet of this worker" in server.log()
        if driver == "pymysql":  # it reads through gevent's sockets: a worker runs several queries at once
            assert overlap > 4 and not warned, overlap
        else:  # mysqlclient reads in C: a query blocks its worker's hub, so at most one query per worker
            assert overlap <= 4 and warned, (overlap, server.log()[-3000:])


@pytest.mark.parametrize(("name", "args", "app", "driver"), CONTROLS, ids=[c[0] for c in CONTROLS])
def test_control_without_forkhooks(
    name: str, args: list[str], app: str, driver: str, mysql_dsn: str, tmp_path: Path
) -> None:
    """Without forkhooks the master keeps its start-up session across the fork (4 workers inherit its socket).

    gevent: the greenlets share the wrapper made before patching and Django refuses it: every request
    fails. asgi and uvicorn: no request fails or leaks a row, because Django gives each ASGI request a
    connection of its own (Django #33497): the inherited one is never used, only held.
    """
    poll(lambda: mariadb.sessions(mysql_dsn) == [], timeout=10, what="no session left by an earlier test")
    server = serve(mysql_dsn, tmp_path, name, args, app, driver)
    try:
        held = len(mariadb.sessions(mysql_dsn))
        results, owners = tagged(server, REQUESTS, timeout=3)
    finally:
        server.kill()
    shared = sum(1 for pids in owners.values() if len(pids) > 1)
    record("mysql-workers-control", name, results, held=held, sessions=len(owners), shared_sessions=shared)
    assert held == 1, server.log()[-3000:]
    if "gevent" in name:
        assert results.errors["HTTP 500"] == REQUESTS, results.summary()  # as on PostgreSQL (tests/test_gevent.py)
    else:
        assert (results.failed, results.wrong, shared) == (0, 0, 0), (results.summary(), owners)
