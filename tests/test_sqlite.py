"""SQLite (WAL) under real gunicorn --preload -w 4: every write lands once and intact, with and without forkhooks.

SQLite has no server and no socket: a forked worker that inherits the master's connection shares a file
descriptor, not a session, and SQLite's own file locks serialise the writers. What forkhooks changes is
the master: it closes its connection before forking, so it holds no descriptor of the database while
it supervises.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest

from forkhooks.demo import loadgen

from .record import record
from .servers import gunicorn, start

# A runner behaves the same on every Python and Django here: run once in the matrix (py311).
pytestmark = pytest.mark.slow

APP = "tests.project.sqlite_wsgi:application"
WRITES = 300


def database_fds(pid: int, db: Path) -> list[str]:
    """The descriptors process `pid` holds on the database file or its -wal / -shm files."""
    found = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:  # closed meanwhile
            continue
        if target.startswith(str(db)):
            found.append(target)
    return found


CASES = [("forkhooks", ["-c", "python:forkhooks.gunicorn"]), ("without", [])]


@pytest.mark.e2e
@pytest.mark.parametrize(("case", "args"), CASES, ids=[c[0] for c in CASES])
def test_sqlite_wal_writes(case: str, args: list[str], tmp_path: Path) -> None:
    """300 concurrent writes: all answered with their own row, PRAGMA integrity_check ok, one row per write."""
    db = tmp_path / "db.sqlite3"
    env = {"FORKHOOKS_TEST_SQLITE": str(db), "DJANGO_SETTINGS_MODULE": "tests.project.sqlite_site"}
    server = start(gunicorn(*args, APP), "", tmp_path, env=env)
    try:
        master_fds = database_fds(server.pid, db)
        results = loadgen.run(server.target, WRITES, concurrency=16)
        master_fds_after = database_fds(server.pid, db)
    finally:
        code = server.stop()
    with sqlite3.connect(db) as conn:
        integrity = conn.execute("PRAGMA integrity_check").fetchone()[0]
        mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
        rows, tags, pids = conn.execute(
            "SELECT count(*), count(DISTINCT tag), count(DISTINCT pid) FROM writes"
        ).fetchone()
    conn.close()
    record(
        "sqlite",
        case,
        results,
        integrity=integrity,
        journal_mode=mode,
        rows=rows,
        master_db_fds=len(master_fds_after),
    )
    assert code == 0, server.log()[-3000:]
    assert (results.ok, results.failed, results.wrong) == (WRITES, 0, 0), results.summary()
    assert integrity == "ok" and mode == "wal"
    assert rows == tags == WRITES, (rows, tags)  # every write once, none lost, none doubled
    assert pids >= 2, pids  # several workers wrote at once
    if case == "forkhooks":
        # when_ready closed the master's connection before the first fork: it holds nothing of the database.
        assert master_fds == master_fds_after == [], (master_fds, master_fds_after)
        assert "Traceback" not in server.log(), server.log()[-3000:]
    else:
        # The start-up query's connection stays open in the master for as long as it runs.
        assert str(db) in master_fds and master_fds_after == master_fds, master_fds
