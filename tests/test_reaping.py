"""No query outlives the gunicorn worker that started it, whatever killed it.

A worker killed mid-query (SIGKILL, the OOM killer, a stop that outlasted --graceful-timeout)
closes nothing, and PostgreSQL runs its query to the end. The master ends those backends once
it has reaped the worker (child_exit) or before it exits (on_exit), over a short connection of
its own, and only the backends named for that worker of this host.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from forkhooks._tools.appname import MAX_LENGTH, Owner, compose, host_token, parse, suffix
from forkhooks.demo import loadgen
from forkhooks.demo.loadgen import Results

from .harness import PYTHON, ROOT, child_env, forkhooks_lines, sleeping_backends
from .jobrunners import comes_true, still_running
from .record import record
from .servers import WORKERS, Server, children, gunicorn, poll, ready_workers, start, wait_workers

WSGI = "tests.testsite.wsgi:application"
ASGI = "tests.testsite.asgi:application"
HOOKS = ["-c", "python:forkhooks.gunicorn"]
NO_REAPING = ["-c", "python:tests.reap_off"]  # forkhooks' hooks but child_exit and on_exit: the control
SLEEP = 30  # the slow request's pg_sleep: far longer than any bound below
GONE_WITHIN = 3.0  # the master ends a dead worker's backends within this (measured well under 1 s)
CONTROL_WATCH = 5.0  # without the fix, the query is still running this long after the kill
# The text of the master's line (after "forkhooks: master <pid> ").
ENDED = re.compile(r"ended (\d+) backend\(s\) of worker (\d+), which died without closing them")


# -- the slow request and its backend -----------------------------------------------------------


@dataclass
class Slow:
    """A request in pg_sleep(SLEEP): its backend, that backend's name and the worker running it."""

    request: Future[tuple[int, bytes]]
    backend: int
    name: str
    worker: int


@contextmanager
def slow_request(server: Server, db: psycopg.Connection) -> Iterator[Slow]:
    """Send /slow?seconds=SLEEP and wait (bounded) until its backend runs pg_sleep; the request's thread is joined."""
    pool = ThreadPoolExecutor(1)
    try:
        request = pool.submit(loadgen.get, server.target, f"/slow?seconds={SLEEP}&tag=reap", SLEEP + 10)
        found: list[tuple[int, str]] = []

        def sleeping() -> bool:
            found[:] = sleeping_backends(db)
            return bool(found)

        poll(sleeping, timeout=15, what="a worker's backend in pg_sleep")
        ((backend, name),) = found
        owner = parse(name)
        assert owner is not None and owner.host == host_token(), name
        yield Slow(request, backend, name, owner.pid)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def gone(db: psycopg.Connection, backend: int) -> bool:
    """Whether the backend has left pg_stat_activity."""
    return not db.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", [backend]).fetchall()


def seconds_until_gone(db: psycopg.Connection, backend: int, since: float) -> float:
    """Poll (bounded by GONE_WITHIN) until the backend is gone; seconds from `since`."""
    poll(lambda: gone(db, backend), timeout=GONE_WITHIN, what=f"backend {backend} gone")
    return round(time.monotonic() - since, 2)


def kill_worker_mid_query(server: Server, db: psycopg.Connection) -> tuple[Slow, float]:
    """SIGKILL the worker running a slow query; (the slow request, seconds from the kill to its backend gone)."""
    wait_workers(server)
    with slow_request(server, db) as slow:
        os.kill(slow.worker, signal.SIGKILL)
        killed_at = time.monotonic()
        took = seconds_until_gone(db, slow.backend, killed_at)
    return slow, took


def replacement_serves(server: Server, dead: int) -> Results:
    """4 warmed workers again, the dead one not among them, and 20 requests all answered right."""
    wait_workers(server, excluding={dead})
    after = loadgen.run(server.target, 20, concurrency=4)
    assert (after.failed, after.wrong) == (0, 0), after.summary()
    return after


def ended_lines(log: str) -> list[tuple[int, int]]:
    """(master, worker) of each 'ended N backend(s)' line, N >= 1.

    N is the sleeping backend and, when the master is quicker than the server, the worker's idle
    pooled one too (an idle backend sees its client's socket close and exits by itself).
    """
    return [
        (line.pid, int(m[2]))
        for line in forkhooks_lines(log, "master")
        if (m := ENDED.match(line.text)) and int(m[1]) >= 1
    ]


def master_backends(db: psycopg.Connection, master: int) -> int:
    """Backends named for the master right now (it must hold none while it supervises)."""
    return int(
        db.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE right(application_name, %s) = %s",
            [len(suffix("master", master)), suffix("master", master)],
        ).fetchone()[0]  # type: ignore[index]
    )


# -- 1, 2, 4. a worker SIGKILLed mid-query --------------------------------------------------------

KILLED = [
    ("hooks-sync", [*HOOKS, "-k", "sync"], WSGI),
    ("k-sync", ["-k", "forkhooks.workers.SyncWorker"], WSGI),
    ("k-uvicorn", ["-k", "forkhooks.workers.UvicornWorker"], ASGI),
]
# gunicorn's default, no --preload: the master never imports the app; DJANGO_SETTINGS_MODULE in its
# environment is enough for it to find the database (it loads the settings, not the app).
NO_PRELOAD = [PYTHON, "-m", "gunicorn", "-w", str(WORKERS), "-b", "unix:{sock}", *HOOKS, "-k", "sync", WSGI]
SETTINGS = {"DJANGO_SETTINGS_MODULE": "tests.testsite.settings"}


@pytest.mark.e2e
@pytest.mark.parametrize(("name", "args", "app"), KILLED, ids=[c[0] for c in KILLED])
def test_gunicorn_sigkilled_worker_query_ends_within_3s(
    name: str, args: list[str], app: str, dsn: str, db: psycopg.Connection, tmp_path: Path
) -> None:
    """SIGKILL the worker in pg_sleep(30): its backend gone within 3 s, one line says so; a replacement serves."""
    server = start(gunicorn(*args, app), dsn, tmp_path)
    try:
        slow, took = kill_worker_mid_query(server, db)
        after = replacement_serves(server, slow.worker)
        held = master_backends(db, server.pid)
        log = server.log()
    finally:
        server.stop()
    record("reaping", f"sigkill-{name}", after, gone_s=took)
    assert ended_lines(log) == [(server.pid, slow.worker)], log[-3000:]
    assert held == 0, "the master keeps its reaping connection open"


@pytest.mark.e2e
def test_gunicorn_without_preload_sigkilled_worker_query_ends_within_3s(
    dsn: str, db: psycopg.Connection, tmp_path: Path
) -> None:
    """No --preload: the master loads Django's settings (not the app) when a worker dies uncleanly, and reaps."""
    server = start(NO_PRELOAD, dsn, tmp_path, env=SETTINGS)
    try:
        slow, took = kill_worker_mid_query(server, db)
        after = replacement_serves(server, slow.worker)
        held = master_backends(db, server.pid)
        log = server.log()
    finally:
        server.stop()
    record("reaping", "sigkill-no-preload", after, gone_s=took)
    assert took <= GONE_WITHIN
    assert ended_lines(log) == [(server.pid, slow.worker)], log[-3000:]
    assert held == 0


@pytest.mark.e2e
def test_control_gunicorn_sigkilled_worker_query_runs_on(dsn: str, db: psycopg.Connection, tmp_path: Path) -> None:
    """Control: forkhooks' hooks without child_exit/on_exit; the SIGKILLed worker's pg_sleep still runs 5 s on."""
    server = start(gunicorn(*NO_REAPING, "-k", "sync", WSGI), dsn, tmp_path)
    try:
        wait_workers(server)
        with slow_request(server, db) as slow:
            os.kill(slow.worker, signal.SIGKILL)
            poll(lambda: slow.worker not in children(server.pid), timeout=5, what="the killed worker reaped")
            runs_on = still_running(db, slow.backend, timeout=CONTROL_WATCH)
            db.execute("SELECT pg_terminate_backend(%s)", [slow.backend])  # not left to the next test
    finally:
        server.stop()
    assert runs_on, "without child_exit the query of a SIGKILLed worker should run on"
    assert not ended_lines(server.log())


# -- 3. a group stop that outlasts --graceful-timeout ---------------------------------------------


def stop_group_mid_query(
    args: list[str], dsn: str, db: psycopg.Connection, tmp_path: Path
) -> tuple[Server, Slow, float | None]:
    """SIGTERM the group mid-request, --graceful-timeout 1: (server, request, s from the master's exit to gone)."""
    server = start(gunicorn(*args, "--graceful-timeout", "1", "-k", "sync", WSGI), dsn, tmp_path)
    try:
        wait_workers(server)
        with slow_request(server, db) as slow:
            os.killpg(server.pid, signal.SIGTERM)
            server.proc.wait(20)
            exited_at = time.monotonic()
            if comes_true(lambda: gone(db, slow.backend), timeout=CONTROL_WATCH):
                took: float | None = round(time.monotonic() - exited_at, 2)
            else:
                took = None
                db.execute("SELECT pg_terminate_backend(%s)", [slow.backend])
    finally:
        server.kill()
    return server, slow, took


@pytest.mark.e2e
def test_gunicorn_stop_that_outlasts_graceful_timeout_ends_the_killed_worker_query(
    dsn: str, db: psycopg.Connection, tmp_path: Path
) -> None:
    """gunicorn SIGKILLs the worker still in pg_sleep after 1 s: its query is gone within 3 s of the master's exit."""
    server, slow, took = stop_group_mid_query(HOOKS, dsn, db, tmp_path)
    log = server.log()
    record("reaping", "stop-graceful-timeout-sync", Results(), gone_after_exit_s=took)
    assert took is not None and took <= GONE_WITHIN, f"backend of worker {slow.worker} still there: {log[-3000:]}"
    # The 3 idle workers closed their pools and marked it: the master ended nothing of theirs.
    assert ended_lines(log) == [(server.pid, slow.worker)], log[-3000:]


@pytest.mark.e2e
def test_control_gunicorn_stop_that_outlasts_graceful_timeout_leaves_the_query(
    dsn: str, db: psycopg.Connection, tmp_path: Path
) -> None:
    """Control: without child_exit/on_exit the SIGKILLed worker's pg_sleep still runs 5 s after the master exited."""
    server, slow, took = stop_group_mid_query(NO_REAPING, dsn, db, tmp_path)
    assert took is None, f"backend {slow.backend} ended {took}s after the master exited, without the fix"
    assert not ended_lines(server.log())


# -- the exit mark: a worker that closed everything costs its master no connection ---------------

NO_MARK = ["-c", "python:tests.reap_nomark"]  # forkhooks' hooks, no exit mark: the master looks for every worker


def clean_stop_with_planted_backend(
    conf: list[str], dsn: str, db: psycopg.Connection, tmp_path: Path, kind: tuple[str, ...] = ("-k", "sync", WSGI)
) -> bool:
    """Stop gunicorn (SIGTERM, idle workers) while a backend named for one of its workers sleeps; whether the master
    looked for that worker's backends.

    The planted backend stands for one the worker would have left open. This process holds its connection, so a
    master that looks leaves it alone and says so (the name alone is no proof); it must survive either way.
    """
    server = start(gunicorn(*conf, *kind), dsn, tmp_path)
    try:
        worker = min(wait_workers(server))
        planted = Sleeper(dsn, compose(None, "worker", worker))
        planted.start()
        poll(lambda: planted.backend in {b for b, _ in sleeping_backends(db)}, timeout=10, what="the planted backend")
        assert server.stop() == 0
        survived = not gone(db, planted.backend)
        looked = f"backend {planted.backend} carries the name of process {worker}" in server.log()
    finally:
        server.kill()
    db.execute("SELECT pg_terminate_backend(%s)", [planted.backend])
    planted.join(10)
    assert survived, "a backend this process holds was ended on its name alone"
    return looked


# uvicorn's worker dies by the stop signal (it re-raises it): it marks its close before it does.
CLEAN_STOPS = {"sync": (*HOOKS, "-k", "sync", WSGI), "k-uvicorn": ("-k", "forkhooks.workers.UvicornWorker", ASGI)}


@pytest.mark.e2e
@pytest.mark.parametrize("kind", CLEAN_STOPS)
def test_gunicorn_master_skips_workers_that_closed_cleanly(
    kind: str, dsn: str, db: psycopg.Connection, tmp_path: Path
) -> None:
    """Idle workers stopped cleanly mark their close: the master does not look for their backends."""
    assert not clean_stop_with_planted_backend([], dsn, db, tmp_path, CLEAN_STOPS[kind])


@pytest.mark.e2e
def test_control_gunicorn_master_without_exit_mark_looks_for_every_worker(
    dsn: str, db: psycopg.Connection, tmp_path: Path
) -> None:
    """Control: without the mark the master connects for each reaped worker, and finds the planted backend."""
    assert clean_stop_with_planted_backend(NO_MARK, dsn, db, tmp_path)


# -- 5. a dirty worker SIGKILLed mid-query (gunicorn >= 25) ------------------------------------------

DIRTY = ["--dirty-app", "tests.reap_dirty:SleepApp", "--dirty-workers", "1"]
DIRTY_APP = "tests.reap_dirty:application"


def dirty_sleeping(db: psycopg.Connection) -> list[tuple[int, str]]:
    """(backend pid, application_name) of dirty workers' backends in pg_sleep."""
    rows = db.execute(
        "SELECT pid, application_name FROM pg_stat_activity WHERE state = 'active' AND query LIKE '%%pg_sleep%%'"
        " AND application_name LIKE 'forkhooks:dirty-worker:%%'"
    ).fetchall()
    return [(int(r[0]), str(r[1])) for r in rows]


def kill_dirty_worker_mid_query(
    conf: list[str], dsn: str, db: psycopg.Connection, tmp_path: Path
) -> tuple[Server, int, float | None]:
    """SIGKILL the dirty worker in pg_sleep(30): (server, dirty worker pid, s from the kill to its backend gone)."""
    pytest.importorskip("gunicorn.dirty", reason="dirty workers need gunicorn >= 25")
    server = start(gunicorn(*conf, *DIRTY, "-k", "sync", DIRTY_APP), dsn, tmp_path)
    pool = ThreadPoolExecutor(1)
    try:
        # The dirty arbiter is the master's child too: count the warmed workers only.
        poll(lambda: len(ready_workers(server)) == WORKERS, timeout=20, what="4 warmed workers")
        pool.submit(loadgen.get, server.target, f"/dirty-sleep?seconds={SLEEP}", SLEEP + 10)
        found: list[tuple[int, str]] = []

        def sleeping() -> bool:
            found[:] = dirty_sleeping(db)
            return bool(found)

        poll(sleeping, timeout=20, what="a dirty worker's backend in pg_sleep")
        ((backend, name),) = found
        owner = parse(name)
        assert owner is not None and owner.host == host_token(), name
        os.kill(owner.pid, signal.SIGKILL)
        killed_at = time.monotonic()
        took: float | None = None
        if comes_true(lambda: gone(db, backend), timeout=CONTROL_WATCH):
            took = round(time.monotonic() - killed_at, 2)
        else:
            db.execute("SELECT pg_terminate_backend(%s)", [backend])
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        server.stop()
    return server, owner.pid, took


@pytest.mark.e2e
def test_gunicorn_sigkilled_dirty_worker_query_ends_within_3s(dsn: str, db: psycopg.Connection, tmp_path: Path) -> None:
    """The dirty arbiter reaps a SIGKILLed dirty worker and ends its pg_sleep backend within 3 s, in one line."""
    server, dirty, took = kill_dirty_worker_mid_query(HOOKS, dsn, db, tmp_path)
    log = server.log()
    record("reaping", "sigkill-dirty-worker", Results(), gone_s=took)
    assert took is not None and took <= GONE_WITHIN, f"dirty worker {dirty}'s backend: {took}; {log[-3000:]}"
    assert forkhooks_lines(log, "dirty arbiter", rf"ended [12] backend\(s\) of dirty worker {dirty}, which died"), log


@pytest.mark.e2e
def test_control_gunicorn_sigkilled_dirty_worker_query_runs_on(
    dsn: str, db: psycopg.Connection, tmp_path: Path
) -> None:
    """Control: a dirty_worker_exit that only closes the arbiter's own; the killed dirty worker's query runs 5 s on."""
    server, dirty, took = kill_dirty_worker_mid_query(NO_REAPING, dsn, db, tmp_path)
    assert took is None, f"dirty worker {dirty}'s backend ended {took}s after the kill, without the fix"


# -- 6. identity: a pid of another pid namespace is never ours -------------------------------------

# Inside a new pid namespace: take pid P (ns_last_pid), name a connection for "worker P" the way
# forkhooks does there (its own host token), print the name, and sleep in PostgreSQL.
IN_NAMESPACE = """
import os, sys, psycopg
from forkhooks._tools.appname import compose
pid = int(sys.argv[1])
with open("/proc/sys/kernel/ns_last_pid", "w") as f:
    f.write(str(pid - 1))
child = os.fork()
if child == 0:
    assert os.getpid() == pid, os.getpid()
    name = compose(None, "worker", pid)
    conn = psycopg.connect(os.environ["FORKHOOKS_DSN"], application_name=name, autocommit=True)
    print(name, flush=True)
    try:
        conn.execute("SELECT pg_sleep(%s)", [float(sys.argv[2])])
    finally:
        os._exit(0)
os.waitpid(child, 0)
"""

# end_backends_of as a supervisor calls it: from a process with the demo's DATABASES.
END_BACKENDS_OF = """
import sys, django
django.setup()
from forkhooks._adapters.cancel import end_backends_of
print(end_backends_of(int(sys.argv[1])))
"""


def end_backends_of(dsn: str, pid: int) -> int:
    """Run cancel.end_backends_of(pid) in a process configured like the demo site; its count."""
    done = subprocess.run(
        [PYTHON, "-c", END_BACKENDS_OF, str(pid)],
        cwd=ROOT,
        env=child_env(dsn, DJANGO_SETTINGS_MODULE="tests.testsite.settings"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return int(done.stdout.split()[-1])


# A process that names its connection for itself as a forkhooks worker, prints its backend, and sleeps there.
NAMED_SLEEPER = """
import os, sys, psycopg
from forkhooks._tools.appname import compose
conn = psycopg.connect(os.environ["FORKHOOKS_DSN"], application_name=compose(None, "worker", os.getpid()))
print(conn.info.backend_pid, flush=True)
conn.execute("SELECT pg_sleep(%s)", [float(sys.argv[1])])
"""


class Sleeper(threading.Thread):
    """A connection named `name` running pg_sleep(SLEEP) on a thread of this process; it may be terminated."""

    def __init__(self, dsn: str, name: str) -> None:
        super().__init__(daemon=True)
        self.conn = psycopg.connect(dsn, application_name=name, autocommit=True)
        self.backend = self.conn.info.backend_pid

    def run(self) -> None:
        try:
            self.conn.execute("SELECT pg_sleep(%s)", [SLEEP])
        except psycopg.Error:  # terminated: what the test wants for ours
            pass
        finally:
            self.conn.close()


def namespace_usable() -> bool:
    """unshare(1) can make a pid namespace here (root, util-linux, CAP_SYS_ADMIN)."""
    try:
        return subprocess.run(["unshare", "--pid", "--fork", "--mount-proc", "true"], timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@pytest.mark.e2e
def test_end_backends_of_touches_only_this_hosts_dead_pid(dsn: str, db: psycopg.Connection) -> None:
    """Two pid namespaces' 'worker P': end_backends_of(P) ends ours (P dead), not theirs; a live pid's, nothing."""
    if not namespace_usable():
        pytest.skip("needs root and unshare --pid (util-linux) to make a second pid namespace")
    # Ours: a worker of this host killed mid-query (pid P). Theirs: pid P in another pid namespace.
    victim = subprocess.Popen(
        [PYTHON, "-c", NAMED_SLEEPER, str(SLEEP)], cwd=ROOT, env=child_env(dsn), stdout=subprocess.PIPE, text=True
    )
    assert victim.stdout is not None
    ours = int(victim.stdout.readline())
    poll(lambda: ours in {b for b, _ in sleeping_backends(db)}, timeout=10, what="our worker's pg_sleep")
    victim.kill()
    victim.wait(10)
    pid = victim.pid
    theirs = subprocess.Popen(
        ["unshare", "--pid", "--fork", "--mount-proc", PYTHON, "-c", IN_NAMESPACE, str(pid), str(SLEEP)],
        cwd=ROOT,
        env=child_env(dsn),
        stdout=subprocess.PIPE,
        text=True,
    )
    alive = Sleeper(dsn, compose(None, "worker", os.getpid()))  # a live process's backend: never touched
    try:
        assert theirs.stdout is not None
        their_name = theirs.stdout.readline().strip()
        their_owner = parse(their_name)
        assert their_owner == Owner("forkhooks", "worker", pid, their_owner.host if their_owner else None)
        assert their_owner is not None and their_owner.host != host_token(), their_name
        alive.start()
        poll(lambda: len(sleeping_backends(db)) == 3, timeout=10, what="three backends in pg_sleep")
        their_backend = next(b for b, n in sleeping_backends(db) if n == their_name)

        assert end_backends_of(dsn, os.getpid()) == 0  # alive: nothing, whatever its backends
        assert end_backends_of(dsn, pid) == 1
        poll(lambda: gone(db, ours), timeout=GONE_WITHIN, what="our dead pid's backend gone")
        running = {b for b, _ in sleeping_backends(db)}
        assert their_backend in running, "the other namespace's worker with the same pid was touched"
        assert alive.backend in running
    finally:
        db.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE pid <> pg_backend_pid()"
            " AND application_name LIKE 'forkhooks:worker:%%'"
        )
        theirs.wait(20)
        alive.join(10)


def test_compose_parse_round_trip_and_63_bytes() -> None:
    """compose() and parse() agree, with or without a host; a long (multi-byte) prefix is cut to fit 63 bytes."""
    host = host_token()
    for prefix, role, pid in [(None, "worker", 1), ("my:app", "dirty worker", 4194304), ("x", "master", 42)]:
        name = compose(prefix, role, pid)
        assert parse(name) == Owner(prefix or "forkhooks", role.replace(" ", "-"), pid, host)
        assert name.endswith(suffix(role, pid))
    assert parse("forkhooks:worker:12") == Owner("forkhooks", "worker", 12, None)  # an older forkhooks' name
    for other in ("psql", "forkhooks:worker:", "a:b:c@", "forkhooks:worker:12@not-a-token", ""):
        owner = parse(other)
        assert owner is None or owner.host is None, other
    long = "é" * 100
    name = compose(long, "dirty worker", 4194304, host="abcdefgh")
    assert len(name.encode()) <= MAX_LENGTH
    assert name.endswith(":dirty-worker:4194304@abcdefgh")
    assert parse(name) == Owner(name[: -len(":dirty-worker:4194304@abcdefgh")], "dirty-worker", 4194304, "abcdefgh")
    name.encode().decode()  # cut on a character boundary


def test_reaping_hooks_never_raise_whatever_they_are_given() -> None:
    """child_exit, on_exit and the worker class's chaining given junk: they return, a master never dies of them."""
    import forkhooks.gunicorn as fh
    from forkhooks._adapters.gunicorn import chain_master_hooks, prepare_exit_mark

    for junk in (None, object(), "x", 3):
        fh.child_exit(junk, junk)
        fh.on_exit(junk)
        fh.pre_fork(junk, junk)
        prepare_exit_mark(junk)
        chain_master_hooks(junk)


def test_worker_class_chains_reaping_after_the_users_hooks_once() -> None:
    """On gunicorn's own Config: the user's child_exit/on_exit still run, forkhooks' after them, chained once."""
    from gunicorn.config import Config

    import forkhooks.gunicorn as fh
    from forkhooks._adapters.gunicorn import chain_master_hooks

    calls: list[str] = []

    def my_child_exit(server: object, worker: object) -> None:
        calls.append("child_exit")

    def my_on_exit(server: object) -> None:
        calls.append("on_exit")

    cfg = Config()
    cfg.set("child_exit", my_child_exit)
    cfg.set("on_exit", my_on_exit)
    chain_master_hooks(cfg)
    chained = (cfg.child_exit, cfg.on_exit)
    chain_master_hooks(cfg)  # a second worker built on the same config: nothing more
    assert (cfg.child_exit, cfg.on_exit) == chained
    assert chained[0] is not my_child_exit and chained[1] is not my_on_exit
    cfg.child_exit(None, None)
    cfg.on_exit(None)
    assert calls == ["child_exit", "on_exit"]
    ours = Config()
    ours.set("child_exit", fh.child_exit)  # a config that already has forkhooks' own: left as it is
    chain_master_hooks(ours)
    assert ours.child_exit is fh.child_exit
