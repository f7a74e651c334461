"""What every test and harness module shares: the tree's paths, the example project's environment, backend counts."""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from forkhooks._tools.appname import compose
from forkhooks.demo.process import poll

if TYPE_CHECKING:  # imported where used: the unit tier (tests/unit) runs without the drivers
    import psycopg

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
PYTHON = sys.executable


# forkhooks' lines about one process, after whatever prefix the server's logger adds (gunicorn's
# "[time] [pid] [INFO] ", uWSGI's "WARNING ", Celery's): "forkhooks: <who> <pid> <what happened>".
_LINE = re.compile(r"forkhooks: (?P<who>[a-z][a-z -]*?) (?P<pid>\d+):? (?P<text>.*)")


@dataclass(frozen=True)
class LogLine:
    """One line forkhooks logged about a process."""

    n: int  # its index in log.splitlines(), to compare the order of lines
    who: str  # the role: "worker", "master", "dirty worker", "dirty arbiter", "celery worker", ...
    pid: int
    text: str  # what happened: "opened 'default' (2 connections)", "closed 1 connection and 1 pool", ...


def forkhooks_lines(log: str, who: str | None = None, text: str = "") -> list[LogLine]:
    """forkhooks' lines in a server's log, of `who` only if given, whose text matches the regex `text` at its start."""
    found = []
    for n, line in enumerate(log.splitlines()):
        m = _LINE.search(line)
        if m and (who is None or m["who"] == who) and re.match(text, m["text"]):
            found.append(LogLine(n, m["who"], int(m["pid"]), m["text"]))
    return found


def logged_pids(log: str, text: str, who: str = "worker") -> set[int]:
    """Pids of the `who` processes that logged `text` (a regex matched at the start): "opened", "closed", ..."""
    return {line.pid for line in forkhooks_lines(log, who, text)}


def app_backends(observer: psycopg.Connection) -> int:
    """Client backends on the server other than observers'."""
    row = observer.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'"
        " AND application_name <> 'forkhooks-observer'"
    ).fetchone()
    assert row is not None
    return int(row[0])


def child_env(dsn: str, **extra: str) -> dict[str, str]:
    """Environment for a subprocess running the example project."""
    env = dict(os.environ, FORKHOOKS_DSN=dsn, PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = os.pathsep.join([str(EXAMPLES), str(ROOT), env.get("PYTHONPATH", "")])
    env.update(extra)
    return env


def sleeping_backends(db: psycopg.Connection) -> list[tuple[int, str]]:
    """(backend pid, application_name) of backends running pg_sleep for a worker."""
    rows = db.execute(
        "SELECT pid, application_name FROM pg_stat_activity WHERE backend_type = 'client backend'"
        " AND state = 'active' AND query LIKE '%%pg_sleep%%' AND application_name LIKE 'forkhooks:worker:%%'"
    ).fetchall()
    return [(int(r[0]), str(r[1])) for r in rows]


def sleeping(db: psycopg.Connection) -> int:
    """Queries in pg_sleep right now, of any client but observers."""
    row = db.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%pg_sleep%' AND state = 'active'"
        " AND application_name <> 'forkhooks-observer'"
    ).fetchone()
    assert row is not None
    return int(row[0])


def run_python(code: str, dsn: str = "", **env: str) -> subprocess.CompletedProcess[str]:
    """Run a snippet in a fresh interpreter (the hooks discard state: keep pytest's process clean)."""
    return subprocess.run(
        [PYTHON, "-c", textwrap.dedent(code)],
        cwd=ROOT,
        env=child_env(dsn, **env),
        capture_output=True,
        text=True,
        timeout=60,
    )


def forkhooks_cli(dsn: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Run `python -m forkhooks ...` as a user would."""
    return subprocess.run(
        [PYTHON, "-m", "forkhooks", *args],
        cwd=ROOT,
        env=child_env(dsn, **env),
        capture_output=True,
        text=True,
        timeout=60,
    )


def django_check(dsn: str, *args: str, before: str = "", **env: str) -> subprocess.CompletedProcess[str]:
    """Run Django's system checks with tests/project/settings_checks.py, after `before` ran."""
    code = (
        f"{before}\nimport django, sys\nfrom django.core.management import call_command\ndjango.setup()\n"
        f"call_command('check', *sys.argv[1:])"
    )
    return subprocess.run(
        [PYTHON, "-c", code, *args],
        cwd=ROOT,
        env=child_env(dsn, DJANGO_SETTINGS_MODULE="tests.project.settings_checks", **env),
        capture_output=True,
        text=True,
        timeout=60,
    )


@contextlib.contextmanager
def killed_client(dsn: str, db: psycopg.Connection, seconds: int = 60) -> Iterator[tuple[int, int]]:
    """A real orphan: a process that named its connection after itself, SIGKILLed during pg_sleep.

    Yields (its pid, its backend's pid); the backend, still sleeping, is terminated at the end.
    """
    code = (
        "import os, psycopg\nfrom forkhooks._tools.appname import compose\n"
        "c = psycopg.connect(os.environ['FORKHOOKS_DSN'], application_name=compose(None, 'worker', os.getpid()))\n"
        f"c.execute('SELECT pg_sleep({seconds})')"
    )
    child = subprocess.Popen([PYTHON, "-c", code], cwd=ROOT, env=child_env(dsn))
    name = compose(None, "worker", child.pid)
    query = "SELECT pid FROM pg_stat_activity WHERE application_name = %s AND state = 'active'"
    try:
        poll(lambda: db.execute(query, [name]).fetchone() is not None, timeout=15, what="the child's pg_sleep")
        row = db.execute(query, [name]).fetchone()
        assert row is not None
        child.kill()
        child.wait(10)
        yield child.pid, int(row[0])
    finally:
        child.kill()
        child.wait(10)
        db.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s", [name])
