"""Behind a real pgbouncer (Debian's), in session and transaction mode, each beside the direct connection.

A pooled server backend keeps the application_name of the last client that
used it, so behind a pooler a name proves nothing: forkhooks must cancel,
terminate and condemn nothing there, and say so. Fork safety itself holds.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import psycopg2
import pytest

from forkhooks._tools.appname import compose, parse
from forkhooks._tools.clients import through_pooler
from forkhooks.demo import loadgen
from forkhooks.demo.procnet import server_sockets

from .harness import PYTHON, ROOT, child_env, forkhooks_cli, killed_client
from .jobrunners import comes_true, still_running
from .pgbouncer import PgBouncer, find_pgbouncer
from .pgserver import PostgresServer, TLSUnavailable
from .record import record
from .servers import Server, gunicorn, poll, start

# A runner or a proxy behaves the same on every Python and Django here: run once in the matrix (py311).
pytestmark = pytest.mark.slow

WSGI = "tests.testsite.wsgi:application"
MODES = ["session", "transaction"]
REQUESTS = 300
SLEEP = 5  # the stranger's query, seconds

Bouncers = Callable[[str], PgBouncer]


def target(dsn: str, pgbouncers: Bouncers, via: str) -> str:
    """The DSN clients use: the server itself ('direct') or a pgbouncer in that pool mode."""
    return dsn if via == "direct" else pgbouncers(via).dsn


# -- detection: the pid the server announced is not the backend's ---------------------------------


@pytest.mark.parametrize("driver", ["psycopg", "psycopg2"])
@pytest.mark.parametrize("via", ["direct", *MODES])
def test_a_pooler_is_detected(dsn: str, pgbouncers: Bouncers, via: str, driver: str) -> None:
    """BackendKeyData's pid differs from pg_backend_pid() through pgbouncer (both modes, both drivers), not direct."""
    url = target(dsn, pgbouncers, via)
    conn: Any = psycopg.connect(url, autocommit=True) if driver == "psycopg" else psycopg2.connect(url)
    try:
        conn.autocommit = True
        assert through_pooler(conn, conn.cursor()) is (via != "direct")
    finally:
        conn.close()


# -- cancel_queries_of: never the stranger's query -------------------------------------------------

CANCELLER = """
import json, logging, os, sys
logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(levelname)s %(message)s")
import django
django.setup()
from forkhooks._adapters import cancel
from forkhooks._tools import clients

if os.environ.get("CASE_NO_DETECTION") == "1":  # a control: detection undone
    clients.through_pooler = lambda conn, cur: False
if os.environ.get("CASE_NO_PROOF") == "1":  # a control: the kernel's word on who holds a backend ignored
    cancel._proven = lambda conn, rows, pid, log: [int(r[0]) for r in rows]
pid = int(sys.argv[1])
if sys.argv[2] == "end":
    print(json.dumps([cancel.end_backends_of(pid) for _ in range(2)]))
else:
    print(json.dumps([cancel.cancel_queries_of(pid, "celery-worker") for _ in range(2)]))
"""


def cancel_from_parent(
    url: str, pid: int, settings: str = "settings_jobs", call: str = "cancel", **env: str
) -> tuple[list[int], str]:
    """cancel_queries_of(pid, 'celery-worker') (or end_backends_of(pid): `call` 'end') twice, in a process whose
    Django settings (tests.project.`settings`: psycopg 3 with Django's pool, as the job runners' tests use, or
    psycopg2) point at `url`: (the two counts, its log)."""
    done = subprocess.run(
        [PYTHON, "-c", CANCELLER, str(pid), call],
        cwd=ROOT,
        env=child_env(url, DJANGO_SETTINGS_MODULE=f"tests.project.{settings}", **env),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1]), done.stderr


class Sleeper(threading.Thread):
    """A client running pg_sleep(SLEEP) on `url`; `outcome` is 'completed' or the error's class name."""

    def __init__(self, url: str, appname: str | None) -> None:
        super().__init__(daemon=True)
        self.url, self.appname, self.outcome = url, appname, ""

    def run(self) -> None:
        kwargs = {"application_name": self.appname} if self.appname else {}
        try:
            with psycopg.connect(self.url, autocommit=True, **kwargs) as conn:
                conn.execute(f"SELECT pg_sleep({SLEEP})")
            self.outcome = "completed"
        except psycopg.Error as exc:
            self.outcome = type(exc).__name__

    def result(self) -> str:
        self.join(SLEEP + 10)
        return self.outcome


def sleeping(db: psycopg.Connection) -> dict[int, str]:
    """backend pid -> application_name of the backends running pg_sleep."""
    rows = db.execute(
        "SELECT pid, application_name FROM pg_stat_activity WHERE state = 'active' AND query LIKE '%pg_sleep%'"
        " AND pid <> pg_backend_pid()"
    ).fetchall()
    return {int(r[0]): r[1] for r in rows}


@pytest.fixture
def unnamed(monkeypatch: pytest.MonkeyPatch) -> None:
    """This process's clients send no application_name (as the stranger in the report)."""
    monkeypatch.delenv("PGAPPNAME", raising=False)


@pytest.mark.parametrize(
    ("case", "settings"),
    [
        ("pooled", "settings_jobs"),
        ("pooled", "settings_jobs_psycopg2"),
        ("pooled-no-detection", "settings_jobs"),
        ("direct", "settings_jobs"),
        ("direct-no-proof", "settings_jobs"),
    ],
)
def test_cancel_spares_a_strangers_query_behind_pgbouncer(
    dsn: str, db: psycopg.Connection, pgbouncers: Bouncers, case: str, settings: str, unnamed: None
) -> None:
    """A stranger's pg_sleep on the server backend a celery-worker client used last, both through pgbouncer, is not
    cancelled: by a supervisor through pgbouncer too (said once), or connected directly (pgbouncer holds that
    backend). Controls: the pooler detection, or the kernel's proof, undone: the stranger's query is cancelled.
    """
    bouncer = pgbouncers("transaction")
    worker = compose(None, "celery-worker", os.getpid())
    with psycopg.connect(bouncer.dsn, autocommit=True, application_name=worker) as conn:
        conn.execute("SELECT 1")  # a server backend now carries the worker's name; pgbouncer reuses it next
    stranger = Sleeper(bouncer.dsn, None)
    stranger.start()
    poll(lambda: worker in sleeping(db).values(), timeout=10, what="the stranger's pg_sleep under the worker's name")
    # Through pgbouncer the kernel's proof would spare the stranger too: the control undoes both.
    control = {"pooled-no-detection": ["CASE_NO_DETECTION", "CASE_NO_PROOF"], "direct-no-proof": ["CASE_NO_PROOF"]}
    env = dict.fromkeys(control.get(case, []), "1")
    supervisor = bouncer.dsn if case.startswith("pooled") else dsn
    counts, log = cancel_from_parent(supervisor, os.getpid(), settings, **env)
    outcome = stranger.result()
    if env:
        assert (counts, outcome) == ([1, 0], "QueryCanceled"), log
        return
    assert (counts, outcome) == ([0, 0], "completed"), log
    if case == "direct":
        assert f"pid {bouncer.pid} (pgbouncer) holds its connection" in log, log
        return
    warnings = [line for line in log.splitlines() if "connection pooler" in line]
    assert len(warnings) == 1, log
    assert warnings[0].startswith("WARNING") and "client_connection_check_interval = 500" in warnings[0]


def test_cancel_direct_cancels_the_right_query(dsn: str, db: psycopg.Connection, unnamed: None) -> None:
    """Direct to the server: the celery-worker's query is cancelled, the stranger's beside it completes; no warning."""
    worker = compose(None, "celery-worker", os.getpid())
    own, stranger = Sleeper(dsn, worker), Sleeper(dsn, None)
    own.start()
    stranger.start()
    poll(lambda: len(sleeping(db)) == 2, timeout=10, what="both pg_sleep queries running")
    counts, log = cancel_from_parent(dsn, os.getpid())
    assert counts == [1, 0], log
    assert (own.result(), stranger.result()) == ("QueryCanceled", "completed")
    assert "connection pooler" not in log


@pytest.mark.parametrize("case", ["direct", "transaction", "transaction-no-detection"])
def test_end_backends_of_a_gone_process(dsn: str, db: psycopg.Connection, pgbouncers: Bouncers, case: str) -> None:
    """end_backends_of(a gone pid): direct, its orphaned backend is terminated; through pgbouncer, the server
    backend that kept its name (pgbouncer's, idle) is left alone, said once. Control: detection undone kills it."""
    if case == "direct":
        with killed_client(dsn, db) as (gone, backend):
            counts, log = cancel_from_parent(dsn, gone, call="end")
            assert counts == [1, 0], log
            poll(lambda: backend not in sleeping(db), timeout=5, what="the orphan's backend terminated")
        return
    bouncer = pgbouncers("transaction")
    code = "import os, psycopg\nfrom forkhooks._tools.appname import compose\n"
    code += "c = psycopg.connect(os.environ['FORKHOOKS_DSN'], autocommit=True,"
    code += " application_name=compose(None, 'worker', os.getpid()))\nc.execute('SELECT 1')"
    with psycopg.connect(bouncer.dsn) as other:
        other.execute("SELECT 1")  # holds a server backend in its transaction: the client gets another
        client = subprocess.Popen([PYTHON, "-c", code], cwd=ROOT, env=child_env(bouncer.dsn))
        assert client.wait(60) == 0
    # pgbouncer reuses the last released backend first: the cancelling process's queries run on `other`'s,
    # not on the one the client named (which would spare itself: pid <> pg_backend_pid()).
    name = compose(None, "worker", client.pid)

    def named() -> list[int]:
        rows = db.execute("SELECT pid FROM pg_stat_activity WHERE application_name = %s", [name]).fetchall()
        return [int(r[0]) for r in rows]

    # The client exited cleanly; pgbouncer's server backend it used keeps its name.
    assert len(named()) == 1
    env = dict.fromkeys(["CASE_NO_DETECTION", "CASE_NO_PROOF"], "1") if case.endswith("no-detection") else {}
    counts, log = cancel_from_parent(bouncer.dsn, client.pid, call="end", **env)
    if env:
        assert counts == [1, 0], log
        poll(lambda: not named(), timeout=5, what="pgbouncer's backend terminated")
        return
    assert counts == [0, 0], log
    assert len(named()) == 1
    assert len([line for line in log.splitlines() if "connection pooler" in line]) == 1, log


# -- forkhooks connections -----------------------------------------------------------------------


@pytest.mark.parametrize("via", ["direct", *MODES])
def test_connections_through_a_pooler_gives_no_verdict(
    dsn: str, db: psycopg.Connection, pgbouncers: Bouncers, via: str
) -> None:
    """A real orphan on the server: direct, ORPHAN and exit 1; through pgbouncer, one line saying why, exit 0."""
    url = target(dsn, pgbouncers, via)
    with killed_client(dsn, db) as (gone, _):
        done = forkhooks_cli(url, "connections", "--dsn", url)
    out = done.stdout
    if via == "direct":
        assert done.returncode == 1, out + done.stderr
        assert re.search(rf"worker {gone} \(forkhooks\): 1 backend\(s\)  \[ORPHAN: owner pid gone", out), out
        assert "connection pooler" not in out
        return
    assert done.returncode == 0, out + done.stderr
    assert out.splitlines()[0].startswith("forkhooks connections: connected through a connection pooler"), out
    assert "ORPHAN" not in out
    assert re.search(rf"worker {gone} \(forkhooks\): 1 backend\(s\)  \[owner pid gone, unverified", out), out


@pytest.fixture(scope="module")
def tcp_pg() -> Iterator[PostgresServer]:
    """A PostgreSQL that also listens on 127.0.0.1 (over TLS): TCP clients, whose sockets /proc/net/tcp shows."""
    try:
        server = PostgresServer(tls=True)
    except TLSUnavailable as exc:
        pytest.skip(str(exc))
    try:
        yield server
    finally:
        server.stop()


@pytest.mark.parametrize("own", ["tcp", "unix"])
def test_connections_verdicts_for_tcp_clients(tcp_pg: PostgresServer, own: str) -> None:
    """TCP clients: a SIGKILLed one's backend is a proven ORPHAN (exit 1); a live process's connection under a
    gone pid's name is grouped under that process, no verdict. Whether the tool itself comes by TCP or Unix socket."""
    url = tcp_pg.dsn if own == "tcp" else tcp_pg.unix_dsn
    gone = subprocess.Popen(["true"])
    gone.wait(10)
    with (
        psycopg.connect(tcp_pg.dsn, autocommit=True, application_name="forkhooks-observer") as db,
        killed_client(tcp_pg.dsn, db) as (killed, _),
        psycopg.connect(tcp_pg.dsn, autocommit=True, application_name=compose(None, "worker", gone.pid)) as held,
    ):
        held.execute("SELECT 1")
        done = forkhooks_cli(url, "connections", "--dsn", url)
    out = done.stdout
    assert done.returncode == 1, out + done.stderr
    assert re.search(rf"worker {killed} \(forkhooks\): 1 backend\(s\)  \[ORPHAN: owner pid gone", out), out
    assert re.search(rf"via pid {os.getpid()} \(\S+\): 1 backend\(s\)  \[.*no verdict", out), out
    assert f"worker {gone.pid} " not in out


# -- fork safety through pgbouncer ----------------------------------------------------------------


def serve(url: str, tmp_path: Path, *, hooks: bool) -> Server:
    """gunicorn --preload -w 4 on the example site, its database `url`; with forkhooks' hooks or plain sync."""
    return start(gunicorn(*(["-c", "python:forkhooks.gunicorn"] if hooks else ["-k", "sync"]), WSGI), url, tmp_path)


def master_links(server: Server, bouncer: PgBouncer) -> int:
    """The master's sockets to pgbouncer."""
    return server_sockets(server.pid, port=bouncer.port)


def named_after_gone_pids(db: psycopg.Connection) -> list[str]:
    """Names of server backends that a name-only rule would call orphans: this host's, their pid gone."""
    rows = db.execute("SELECT application_name FROM pg_stat_activity WHERE backend_type = 'client backend'").fetchall()
    out = []
    for (name,) in rows:
        who = parse(name or "")
        if who is not None and who.host and not os.path.exists(f"/proc/{who.pid}"):
            out.append(name)
    return out


@pytest.mark.e2e
@pytest.mark.parametrize("mode", MODES)
def test_fork_safety_through_pgbouncer(
    dsn: str, db: psycopg.Connection, pgbouncers: Bouncers, tmp_path: Path, mode: str
) -> None:
    """With forkhooks: 0 failed, 0 wrong rows, the master holds no link to pgbouncer; then, after a clean stop,
    `forkhooks connections` to the server directly condemns none of pgbouncer's backends (exit 0) and says why."""
    bouncer = pgbouncers(mode)
    server = serve(bouncer.dsn, tmp_path, hooks=True)
    try:
        before = master_links(server, bouncer)
        results = loadgen.run(server.target, REQUESTS, concurrency=32)
        after = master_links(server, bouncer)
    finally:
        code = server.stop()
    record("pgbouncer", mode, results, master_sockets=after)
    assert (results.requests, results.failed, results.wrong) == (REQUESTS, 0, 0), results.summary()
    assert len(results.pids) == 4, results.summary()
    assert (before, after, code) == (0, 0, 0), server.log()[-3000:]

    stale = named_after_gone_pids(db)
    done = forkhooks_cli(dsn, "connections", "--dsn", dsn)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "ORPHAN" not in done.stdout
    if mode == "transaction":
        # What a name-only rule condemned: pgbouncer's idle server backends, named after gone workers.
        assert stale, "pgbouncer's backends keep the workers' names"
        held = rf"via pid {bouncer.pid} \(pgbouncer\): \d+ backend\(s\)  \[holds backends named after other processes"
        assert re.search(held, done.stdout), done.stdout
        assert all(f"last named {name}" in done.stdout for name in stale), done.stdout


@pytest.mark.e2e
@pytest.mark.parametrize("mode", MODES)
def test_control_without_forkhooks_through_pgbouncer(
    pgbouncers: Bouncers, db: psycopg.Connection, tmp_path: Path, mode: str
) -> None:
    """The same through pgbouncer without forkhooks: the master keeps its link, workers share it, rows leak."""
    bouncer = pgbouncers(mode)
    server = serve(bouncer.dsn, tmp_path, hooks=False)
    try:
        before = master_links(server, bouncer)
        results = loadgen.run(server.target, REQUESTS, concurrency=32, timeout=3, stop_when=loadgen.proven())
    finally:
        server.kill()
    record("pgbouncer-control", mode, results, master_sockets=before)
    assert before > 0, "the master keeps its start-up connection and pool"
    assert results.failed + results.wrong > 0, results.summary()


# -- the server-side bound on orphaned queries ----------------------------------------------------


def test_options_startup_parameter_fails_through_pgbouncer(pgbouncers: Bouncers) -> None:
    """OPTIONS={'options': '-c ...'} cannot set client_connection_check_interval through pgbouncer."""
    with pytest.raises(psycopg.OperationalError, match="unsupported startup parameter: options"):
        psycopg.connect(pgbouncers("transaction").dsn, options="-c client_connection_check_interval=500")


@pytest.fixture
def check_interval(dsn: str, db: psycopg.Connection) -> Iterator[Callable[[], None]]:
    """A function that sets client_connection_check_interval = 500 for the test's role on the server; reset after."""
    user = db.execute("SELECT current_user").fetchall()[0][0]

    def set_it() -> None:
        db.execute(f'ALTER ROLE "{user}" SET client_connection_check_interval = 500')

    try:
        yield set_it
    finally:
        db.execute(f'ALTER ROLE "{user}" RESET client_connection_check_interval')


@pytest.mark.parametrize("case", ["alter-role", "control-unset"])
def test_check_interval_ends_a_killed_clients_query_behind_pgbouncer(
    dsn: str, db: psycopg.Connection, check_interval: Callable[[], None], case: str
) -> None:
    """ALTER ROLE ... SET client_connection_check_interval = 500: a SIGKILLed client's pg_sleep behind pgbouncer
    ends within 3 s. Control, unset: it still runs after 3 s."""
    binary = find_pgbouncer()
    if binary is None:
        pytest.skip("pgbouncer not found (Debian: apt-get install pgbouncer; scripts/test installs it)")
    if case == "alter-role":
        check_interval()
    # A pgbouncer of its own: its server connections start after the ALTER ROLE, so they have the setting.
    bouncer = PgBouncer(binary, dsn, "transaction")
    name = f"forkhooks-test-killed-{case}"
    code = (
        "import os, psycopg\n"
        f"psycopg.connect(os.environ['FORKHOOKS_DSN'], application_name={name!r}).execute('SELECT pg_sleep(60)')"
    )
    client = subprocess.Popen([PYTHON, "-c", code], cwd=ROOT, env=child_env(bouncer.dsn))
    try:
        poll(lambda: name in sleeping(db).values(), timeout=15, what="the client's pg_sleep behind pgbouncer")
        backend = next(pid for pid, n in sleeping(db).items() if n == name)
        client.send_signal(signal.SIGKILL)
        client.wait(10)
        killed = time.monotonic()
        if case == "alter-role":
            assert comes_true(lambda: backend not in sleeping(db), timeout=3), "the orphaned query still runs"
            record_seconds = round(time.monotonic() - killed, 2)
            print(f"orphaned query ended {record_seconds} s after SIGKILL")
        else:
            assert still_running(db, backend, timeout=3)
    finally:
        client.kill()
        client.wait(10)
        db.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s", [name])
        bouncer.stop()
