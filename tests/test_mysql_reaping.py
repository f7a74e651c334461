"""MySQL/MariaDB: each process's registry of its sessions, and a supervisor that acts only on what the server proves.

No server process here but MariaDB: a "child" is a Python process with the MySQL site that holds a
session in SELECT SLEEP(30); the "supervisor" is another process that calls cancel.end_backends_of or
cancel_queries_of, as gunicorn's master, Celery's main process or RQ's worker do. The child's query waits
for a row lock the test holds (tests/mysqlreap.py: MariaDB's SLEEP() would end by itself once its client is gone).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from forkhooks._core import mysql
from forkhooks.demo.loadgen import Results

from . import mariadb
from .harness import PYTHON, ROOT
from .jobrunners import comes_true
from .mysqlreap import exists
from .project.mysqlreap_jobs import LOCKED
from .record import record
from .servers import poll

pytestmark = [pytest.mark.slow, pytest.mark.e2e, pytest.mark.usefixtures("server_up_a_while")]

SETTINGS = "tests.project.mysqlsite.settings"
GONE_WITHIN = 3.0
CONTROL_WATCH = 5.0

# A child: Django on the MySQL site, forkhooks watching its connections (install()), one session stuck in a lock
# wait. It prints its session id, then how the wait ended, its session id again, and whether its registry file is
# still there after forkhooks.close().
CHILD = """
import os, sys, django
django.setup()
import forkhooks
forkhooks.install()
from django.db import connection
from forkhooks._core import mysql
from tests.project.mysqlreap_jobs import LOCKED
with connection.cursor() as cur:
    cur.execute("SELECT CONNECTION_ID()")
    print(cur.fetchone()[0], flush=True)
    try:
        cur.execute(LOCKED)
        print("locked", cur.fetchall(), flush=True)
    except Exception as exc:
        print("interrupted", type(exc).__name__, flush=True)
    cur.execute("SELECT CONNECTION_ID()")
    print(cur.fetchone()[0], flush=True)
forkhooks.close()
print("file", (mysql.registry_dir() / str(os.getpid())).exists(), flush=True)
"""

# A supervisor: the site's DATABASES, one call of cancel.py; prints its count.
SUPERVISOR = """
import sys, django
django.setup()
from forkhooks._adapters import cancel
pid = int(sys.argv[2])
print(cancel.end_backends_of(pid) if sys.argv[1] == "end" else cancel.cancel_queries_of(pid, "worker"))
"""

# Plain os.fork under forkhooks.install(): parent and child each connect; each prints its session id and
# its registry file (JSON, or null); the child closes, and says whether its file is gone.
FORK = """
import json, os, django
django.setup()
import forkhooks
forkhooks.install()
from django.db import connection
from forkhooks._core import mysql

def mine():
    with connection.cursor() as cur:
        cur.execute("SELECT CONNECTION_ID()")
        return int(cur.fetchone()[0])

def registry():
    path = mysql.registry_dir() / str(os.getpid())
    return json.loads(path.read_text()) if path.exists() else None

parent_session = mine()
before = registry()
child = os.fork()
if child == 0:
    session = mine()
    seen = registry()
    forkhooks.close()
    print(json.dumps({"who": "child", "pid": os.getpid(), "session": session, "file": seen,
                      "after_close": registry()}), flush=True)
    os._exit(0)
os.waitpid(child, 0)
print(json.dumps({"who": "parent", "pid": os.getpid(), "session": parent_session, "file": before,
                  "after": registry()}), flush=True)
"""


def env(mysql_dsn: str, driver: str = "mysqlclient", **extra: str) -> dict[str, str]:
    """The MySQL site's environment for a subprocess."""
    found = dict(os.environ, PYTHONUNBUFFERED="1", DJANGO_SETTINGS_MODULE=SETTINGS, FORKHOOKS_MYSQL_DSN=mysql_dsn)
    found["PYTHONPATH"] = os.pathsep.join([str(ROOT), found.get("PYTHONPATH", "")])
    found["FORKHOOKS_MYSQL_DRIVER"] = driver
    found.update(extra)
    return found


def supervise(mysql_dsn: str, action: str, pid: int, said: str = "") -> int:
    """end_backends_of(pid) ('end') or cancel_queries_of(pid) ('cancel') in a supervisor process; its count.

    `said`: a text its log must show (why a session was left alone).
    """
    done = subprocess.run(
        [PYTHON, "-c", SUPERVISOR, action, str(pid)],
        cwd=ROOT,
        env=env(mysql_dsn),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert said in done.stderr, done.stderr
    return int(done.stdout.split()[-1])


def sleeping(mysql_dsn: str, session: int) -> bool:
    """Whether session `session` is in the stuck query (a child's), or in SLEEP (this test's own sleepers)."""
    with mariadb.connect(mysql_dsn) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT count(*) FROM information_schema.processlist WHERE id = %s"
            " AND (info LIKE 'SELECT SLEEP%%' OR info = %s)",
            [session, LOCKED],
        )
        return bool(cur.fetchone()[0])


def kill_session(mysql_dsn: str, session: int) -> None:
    """End a session this test left running (a control's)."""
    with mariadb.connect(mysql_dsn) as conn, conn.cursor() as cur:
        try:
            cur.execute(f"KILL {int(session)}")
        except Exception:  # already gone
            pass


class Child:
    """A CHILD process in SLEEP(30): its pid, its session, its output."""

    def __init__(self, mysql_dsn: str, driver: str = "mysqlclient") -> None:
        self.proc = subprocess.Popen(
            [PYTHON, "-c", CHILD], cwd=ROOT, env=env(mysql_dsn, driver), stdout=subprocess.PIPE, text=True
        )
        assert self.proc.stdout is not None
        self.pid = self.proc.pid
        self.session = int(self.proc.stdout.readline())
        poll(lambda: sleeping(mysql_dsn, self.session), timeout=10, what="the child's stuck query")

    def registry_path(self) -> Path:
        """Its registry file."""
        return mysql.registry_dir() / str(self.pid)

    def kill(self) -> None:
        """SIGKILL it and reap it: its pid is dead, its file stays."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def rest(self) -> list[str]:
        """What it printed after its session id (it has exited)."""
        assert self.proc.stdout is not None
        out = self.proc.stdout.read().split("\n")
        self.proc.wait(10)
        return [line for line in out if line]


@contextmanager
def child(mysql_dsn: str, driver: str = "mysqlclient") -> Iterator[Child]:
    """A Child, killed and its session ended when the test is done."""
    c = Child(mysql_dsn, driver)
    try:
        yield c
    finally:
        if c.proc.poll() is None:
            c.kill()
        kill_session(mysql_dsn, c.session)


def dead_pid() -> int:
    """A pid of this host no process has now (a process that ran and was reaped)."""
    done = subprocess.Popen(["true"])
    done.wait(10)
    return done.pid


def forge(pid: int, connections: list[dict[str, Any]]) -> Path:
    """Write a registry file for `pid` as a process of this user would."""
    folder = mysql.registry_dir()
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = folder / str(pid)
    path.write_text(json.dumps({"pid": pid, "started": None, "connections": connections}))
    return path


def server_of_site(mysql_dsn: str) -> dict[str, Any]:
    """The (host, port, unix socket) the site's alias connects to, as registry entries record it."""
    p = mariadb.params(mysql_dsn)
    return {"host": p.get("host", "localhost"), "port": int(p.get("port", 0)), "unix_socket": p.get("unix_socket", "")}


class Sleeper(threading.Thread):
    """A session of this process in SLEEP(30) on a thread (PyMySQL), with `connect` keyword arguments."""

    def __init__(self, **connect: Any) -> None:
        super().__init__(daemon=True)
        import pymysql

        self.conn = pymysql.connect(autocommit=True, connect_timeout=5, **connect)
        self.session = int(self.conn.thread_id())
        self.local = self.conn._sock.getsockname() if connect.get("host") else None

    def run(self) -> None:
        try:
            with self.conn.cursor() as cur:
                cur.execute("SELECT SLEEP(30)")
        except Exception:
            pass
        finally:
            self.conn.close()


# -- 4. safety ----------------------------------------------------------------------------------------


def tcp_dsn(mysql_dsn: str) -> str:
    """The same server and database over TCP (127.0.0.1 and its port)."""
    with mariadb.connect(mysql_dsn) as conn, conn.cursor() as cur:
        cur.execute("SELECT @@port")
        port = int(cur.fetchone()[0])
    return f"mysql://root@127.0.0.1:{port}/{mariadb.params(mysql_dsn)['database']}"


@pytest.mark.usefixtures("row_lock")
@pytest.mark.parametrize("transport", ["unix", "tcp"])
def test_a_dead_childs_session_is_ended_and_its_file_removed(transport: str, mysql_dsn: str) -> None:
    """A child SIGKILLed mid-query: end_backends_of(pid) KILLs its session (gone within 3 s), removes its file.
    Over TCP its entry carries its client port, and its closed client end is no process's.

    Control first: the same file with a connect time before the server's start: nothing is killed.
    """
    dsn = tcp_dsn(mysql_dsn) if transport == "tcp" else mysql_dsn
    with child(dsn) as c:
        path = c.registry_path()
        real = json.loads(path.read_text())
        assert [e["thread_id"] for e in real["connections"]] == [c.session], real
        (client,) = [e["client"] for e in real["connections"]]
        assert (client is not None) == (transport == "tcp"), real
        c.kill()
        forged = dict(real, connections=[dict(e, connected_at=1000.0) for e in real["connections"]])
        path.write_text(json.dumps(forged))
        assert supervise(dsn, "end", c.pid, said="recorded before the server's last start") == 0
        assert not comes_true(lambda: not sleeping(mysql_dsn, c.session), timeout=1.0)
        path.write_text(json.dumps(real))
        t0 = time.monotonic()
        assert supervise(dsn, "end", c.pid) == 1
        poll(lambda: not exists(mysql_dsn, c.session), timeout=GONE_WITHIN, what="the dead child's session gone")
        took = round(time.monotonic() - t0, 2)
        assert not path.exists()
    record("mysql-reaping", f"end-dead-child-{transport}", Results(), gone_s=took)


def test_a_session_that_is_not_the_dead_childs_is_left_alone(mysql_dsn: str) -> None:
    """Entries of a dead pid naming live sessions that are not theirs: another user's, another client port's, one
    whose client end a live process holds. None is killed."""
    with mariadb.connect(mysql_dsn) as conn, conn.cursor() as cur:
        cur.execute("CREATE USER IF NOT EXISTS 'fh_other'@'localhost'")
    p = mariadb.params(mysql_dsn)
    other = Sleeper(user="fh_other", unix_socket=p["unix_socket"])
    with mariadb.connect(mysql_dsn) as conn, conn.cursor() as cur:
        cur.execute("SELECT @@port")
        port = int(cur.fetchone()[0])
    tcp = Sleeper(user="root", host="127.0.0.1", port=port, database=p["database"])
    sleepers = [other, tcp]
    for s in sleepers:
        s.start()
    try:
        for s in sleepers:
            poll(lambda s=s: sleeping(mysql_dsn, s.session), timeout=10, what="the sleeper's SLEEP")  # type: ignore[misc]
        base = {**server_of_site(mysql_dsn), "database": p["database"], "connected_at": time.time()}
        assert tcp.local is not None
        cases = {
            "now belongs to user 'fh_other'": {**base, "thread_id": other.session, "user": "root"},
            f"not port {tcp.local[1] + 1}": {
                **base,
                "thread_id": tcp.session,
                "user": "root",
                "client": [tcp.local[0], tcp.local[1] + 1],
                "peer_port": port,
            },
            "held by a live process": {
                **base,
                "thread_id": tcp.session,
                "user": "root",
                "client": list(tcp.local),
                "peer_port": port,
            },
        }
        for case, entry in cases.items():
            pid = dead_pid()
            path = forge(pid, [entry])
            assert supervise(mysql_dsn, "end", pid, said=case) == 0, case
            assert not path.exists(), case  # read, acted on as far as proven, removed
        assert all(sleeping(mysql_dsn, s.session) for s in sleepers)
    finally:
        for s in sleepers:
            kill_session(mysql_dsn, s.session)
            s.join(10)


@pytest.mark.usefixtures("row_lock")
def test_a_live_childs_sessions_are_not_ended_and_its_query_is_cancelled_not_its_session(mysql_dsn: str) -> None:
    """end_backends_of(live pid): nothing. cancel_queries_of(live pid): its query ends, its session goes on;
    a clean close at the end removes its registry file."""
    with child(mysql_dsn) as c:
        assert c.registry_path().exists()
        assert supervise(mysql_dsn, "end", c.pid) == 0
        assert sleeping(mysql_dsn, c.session)
        t0 = time.monotonic()
        assert supervise(mysql_dsn, "cancel", c.pid) == 1
        poll(lambda: not sleeping(mysql_dsn, c.session), timeout=GONE_WITHIN, what="the live child's query cancelled")
        took = round(time.monotonic() - t0, 2)
        rest = c.rest()
    record("mysql-reaping", "cancel-live-child", Results(), cancelled_s=took)
    assert rest[0].startswith("interrupted"), rest  # its query was cancelled...
    assert rest[1] == str(c.session), rest  # ...and the same session ran its next query
    assert rest[-1] == "file False", rest


# -- 5. the registry across a plain fork ---------------------------------------------------------------


@pytest.mark.parametrize("driver", ["mysqlclient", "pymysql"])
def test_a_forked_child_lists_its_own_sessions_never_its_parents(driver: str, mysql_dsn: str) -> None:
    """os.fork under forkhooks.install(): the child's file lists its own session only; the parent's file is
    untouched; the child's close removes its file."""
    done = subprocess.run(
        [PYTHON, "-c", FORK], cwd=ROOT, env=env(mysql_dsn, driver), capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    rows = {r["who"]: r for r in map(json.loads, done.stdout.splitlines())}
    parent, kid = rows["parent"], rows["child"]
    assert parent["session"] != kid["session"]
    assert [e["thread_id"] for e in kid["file"]["connections"]] == [kid["session"]], kid
    assert kid["file"]["pid"] == kid["pid"]
    assert kid["after_close"] is None, kid
    assert [e["thread_id"] for e in parent["file"]["connections"]] == [parent["session"]], parent
    assert parent["after"] == parent["file"], "the child changed its parent's file"
    (mysql.registry_dir() / str(parent["pid"])).unlink(missing_ok=True)  # the parent exited without closing


# -- forkhooks connections on MySQL --------------------------------------------------------------------


def connections(mysql_dsn: str) -> tuple[int, str]:
    """`forkhooks connections --settings <the MySQL site>`: (exit status, its report)."""
    done = subprocess.run(
        [PYTHON, "-m", "forkhooks", "connections", "--settings", SETTINGS],
        cwd=ROOT,
        env=env(mysql_dsn),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode in (0, 1), done.stderr
    return done.returncode, done.stdout


def owner_line(report: str, pid: int) -> str:
    """The report's line of process `pid` ('' when it has none)."""
    return next((line for line in report.splitlines() if line.startswith(f"pid {pid} (")), "")


@pytest.mark.usefixtures("row_lock")
def test_connections_lists_sessions_by_owner_and_flags_a_dead_childs_as_orphan(mysql_dsn: str) -> None:
    """A live child's session is listed under its pid, no flag; once SIGKILLed: ORPHAN, exit 1; once its supervisor
    ended it: gone from the report. (Control: the live child is not flagged.)"""
    with child(mysql_dsn) as c:
        _, live = connections(mysql_dsn)
        assert owner_line(live, c.pid).endswith(": 1 backend(s)"), live
        c.kill()
        code, dead = connections(mysql_dsn)
        assert owner_line(dead, c.pid) == f"pid {c.pid} (gone): 1 backend(s)  [ORPHAN: owner pid gone]", dead
        assert code == 1
        assert supervise(mysql_dsn, "end", c.pid) == 1
        poll(lambda: not exists(mysql_dsn, c.session), timeout=GONE_WITHIN, what="the orphan ended")
        _, after = connections(mysql_dsn)
        assert owner_line(after, c.pid) == "", after


def test_an_unreachable_server_is_one_line_and_no_exception(mysql_dsn: str, tmp_path: Path) -> None:
    """A dead pid's entry on a server that does not answer: end_backends_of logs one warning, returns 0, keeps the
    file (a later look may reach the server); the supervisor goes on."""
    nowhere = f"mysql://root@localhost/forkhooks?unix_socket={tmp_path / 'no.sock'}"
    pid = dead_pid()
    server = {"host": "localhost", "port": 0, "unix_socket": str(tmp_path / "no.sock")}
    path = forge(
        pid, [{**server, "thread_id": 5, "user": "root", "database": "forkhooks", "connected_at": time.time()}]
    )
    try:
        done = subprocess.run(
            [PYTHON, "-c", SUPERVISOR, "end", str(pid)],
            cwd=ROOT,
            env=env(nowhere),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout.split()[-1] == "0"
        failed = [line for line in done.stderr.splitlines() if "failed" in line]
        assert len(failed) == 1 and f"MySQL sessions of process {pid} on 'default' failed" in failed[0], done.stderr
        assert "Traceback" not in done.stderr
        assert path.exists()
    finally:
        path.unlink(missing_ok=True)
