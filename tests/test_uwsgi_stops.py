"""Real uWSGI stopped through its whole process group, and workers that die without running Python.

- Group stops (systemd's KillMode=control-group, Ctrl-C): each worker gets the group's signal and
  the master's SIGINT within microseconds; uWSGI's handlers call exit() without masking the other.
  forkhooks masks them: every idle worker closes, none hangs in exit.
- A worker that dies without closing (busy at a stop, SIGKILL, plain harakiri): its query is ended
  by its respawned successor or by the master's exit, within 3 s.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest

from forkhooks.demo import loadgen
from forkhooks.demo.process import children

from .harness import app_backends, sleeping
from .jobrunners import comes_true, running
from .record import record
from .servers import Server, poll
from .uwsgiservers import WORKERS, all_idle, all_workers_up, closed, ini, opened

STARTS = 5  # per signal in the suite; the 50-stop measurement is `FORKHOOKS_UWSGI_STOP_STARTS=25`
MEASURED_STARTS = int(os.environ.get("FORKHOOKS_UWSGI_STOP_STARTS", STARTS))
CONTROL_STARTS = 30  # the control stops at its first failing start
QUERY_GONE = 3  # seconds after the worker's death

# Test-only switches, imported in the ini after forkhooks: forkhooks itself never reads them.
UNMASK = """\
import forkhooks._adapters.uwsgi_signals as signals

signals.mask_when_installed = lambda *args: None  # uWSGI's stop handlers keep their empty sa_mask
"""
NO_REAP = """\
import forkhooks._adapters.uwsgi_reap as reap

reap._table.clear()  # no pid table: neither a successor nor the master's exit ends a dead worker's backends
"""

# Undoes forkhooks' block of the stop signals while a lazy-apps worker loads its app (imported right after
# forkhooks, before the app): the pool threads the app's start-up query starts take stop signals again.
LAZY_UNBLOCK = """\
import signal

import forkhooks._adapters.uwsgi_worker as worker

if worker._loading_mask:
    signal.pthread_sigmask(signal.SIG_SETMASK, worker._loading_mask.pop())
"""
LAZY = "lazy-apps = true"

Start = Callable[..., Server]


@pytest.fixture
def uwsgi(uwsgi_server: Start, tmp_path: Path) -> Start:
    """Start uWSGI (serve()'s arguments, `extra` ini lines, a `switch` module); every server is killed at the end."""
    count = iter(range(1_000_000))

    def run(*args: str, extra: str = "", switch: str = "", env: dict[str, str] | None = None) -> Server:
        where = tmp_path / str(next(count))
        where.mkdir()
        lines = extra
        if switch:
            (where / "switch.py").write_text(switch)
            lines += f"\nimport = {where / 'switch.py'}"
        # A worker stuck in exit is SIGKILLed ("NO MERCY") after 5 s: the stop bound below is 15 s.
        return uwsgi_server(ini(where, last=lines), "--worker-reload-mercy", "5", *args, env=env, tmp=where)

    return run


def group_stop(server: Server, sig: signal.Signals) -> tuple[int, str]:
    """Serve, wait for every worker idle, signal the whole group at once; (workers that skipped the close, why)."""
    all_workers_up(server)
    results = loadgen.run(server.target, 40, concurrency=8)
    assert (results.failed, results.wrong) == (0, 0), results.summary()
    all_idle(server)
    os.killpg(server.pid, sig)
    try:
        code = server.proc.wait(15)
    except subprocess.TimeoutExpired:
        return WORKERS, "the master did not exit within 15 s"
    finally:
        server.kill()
    log = server.log()
    skipped = len(opened(log) - closed(log))
    if code != 0:
        return max(skipped, 1), f"the master exited with {code}"
    if "NO MERCY" in log:  # a worker hung in exit until the master SIGKILLed it
        return max(skipped, 1), "a worker hung in exit (NO MERCY)"
    if "Traceback" in log:
        return max(skipped, 1), "a traceback"
    return skipped, f"{skipped} worker(s) skipped the close" if skipped else ""


# (id, signal, extra ini lines): group SIGINT is a guard (a handler blocks its own signal, so the master's
# SIGINT on top of the group's never re-entered exit); group SIGTERM is the case the mask fixes.
GROUP_STOPS = [
    pytest.param("SIGTERM", signal.SIGTERM, "", id="SIGTERM"),
    pytest.param("SIGINT", signal.SIGINT, "", id="SIGINT"),
    pytest.param("lazy-apps-SIGTERM", signal.SIGTERM, LAZY, id="lazy-apps-SIGTERM", marks=pytest.mark.slow),
]


@pytest.mark.e2e
@pytest.mark.parametrize(("name", "sig", "extra"), GROUP_STOPS)
def test_group_stop_every_idle_worker_closes(
    name: str, sig: signal.Signals, extra: str, uwsgi: Start, db: psycopg.Connection
) -> None:
    """Group SIGTERM / SIGINT to idle workers, several starts: every worker closes, none hangs, nothing is left."""
    closed_total = 0
    for i in range(MEASURED_STARTS):
        server = uwsgi(extra=extra)
        skipped, why = group_stop(server, sig)
        assert not why, f"start {i}: {why}\n{server.log()[-3000:]}"
        closed_total += len(closed(server.log()))
        poll(lambda: app_backends(db) == 0, timeout=10, what="app backends gone")
    record("uwsgi-group-stop", name, loadgen.Results(), starts=MEASURED_STARTS, workers_closed=closed_total)
    assert closed_total == MEASURED_STARTS * WORKERS


CONTROLS = [("unmasked", UNMASK, ""), ("lazy-apps-unblocked", LAZY_UNBLOCK, LAZY)]


@pytest.mark.e2e
@pytest.mark.slow
@pytest.mark.parametrize(("name", "switch", "extra"), CONTROLS, ids=[c[0] for c in CONTROLS])
def test_control_group_sigterm_skips_or_hangs(
    name: str, switch: str, extra: str, uwsgi: Start, db: psycopg.Connection
) -> None:
    """uWSGI's handlers left unmasked (or a lazy-apps app's pool threads taking stop signals): a group SIGTERM
    makes some idle worker skip its close or hang in exit, within a few starts."""
    for i in range(CONTROL_STARTS):
        server = uwsgi(switch=switch, extra=extra)
        skipped, why = group_stop(server, signal.SIGTERM)
        poll(lambda: app_backends(db) == 0, timeout=15, what="app backends gone")
        if why:
            record("uwsgi-control", f"group-SIGTERM {name}", loadgen.Results(), starts=i + 1, skipped=skipped)
            return
    pytest.fail(
        f"every worker closed in {CONTROL_STARTS} group stops with unmasked handlers: the control shows nothing"
    )


def _busy(server: Server, db: psycopg.Connection) -> tuple[int, threading.Thread]:
    """Start a /slow/30 request (a 30 s pg_sleep) in a thread; (the worker pid serving it, the thread)."""
    client = threading.Thread(target=_get_slow, args=(server,), daemon=True)
    client.start()
    poll(lambda: sleeping(db) == 1, timeout=10, what="the slow query running")
    backend = running(db, "pg_sleep")[0]
    row = db.execute("SELECT application_name FROM pg_stat_activity WHERE pid = %s", [backend]).fetchone()
    assert row is not None
    worker = int(str(row[0]).rpartition("@")[0].rpartition(":")[2])  # <prefix>:<role>:<pid>@<host>
    assert worker in children(server.pid), (row, children(server.pid))
    return worker, client


def _get_slow(server: Server) -> None:
    try:
        loadgen.get(server.target, "/slow/30", timeout=35)
    except Exception:  # the worker dies under the request
        pass


def _end_sleep(db: psycopg.Connection) -> None:
    """A control's orphaned query is ended by hand, so the next test starts clean."""
    for backend in running(db, "pg_sleep"):
        db.execute("SELECT pg_terminate_backend(%s)", [backend])


def _dead(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def _gone_after_death(db: psycopg.Connection, worker: int) -> float | None:
    """Wait for `worker` to die, then for the slow query to go (bounded); seconds from death to gone, or None."""
    poll(lambda: _dead(worker), timeout=15, what=f"worker {worker} gone")
    died = time.monotonic()
    if comes_true(lambda: sleeping(db) == 0, timeout=QUERY_GONE + 2):
        return time.monotonic() - died
    return None


@pytest.mark.e2e
@pytest.mark.parametrize("reap", [True, False], ids=["reaped", "control"])
def test_group_stop_ends_the_busy_workers_query(reap: bool, uwsgi: Start, db: psycopg.Connection) -> None:
    """Group SIGTERM while a worker runs a 30 s query (uWSGI skips its atexit): the master's exit ends that query
    within 3 s of the worker's death; without the pid table it runs on."""
    server = uwsgi(switch="" if reap else NO_REAP)
    all_workers_up(server)
    worker, _ = _busy(server, db)
    os.killpg(server.pid, signal.SIGTERM)
    gone = _gone_after_death(db, worker)
    code = server.proc.wait(15)
    log = server.log()
    record("uwsgi-busy-stop", "reaped" if reap else "control", loadgen.Results(), gone_after=gone)
    if not reap:
        assert gone is None, "without the pid table the killed worker's query runs on"
        _end_sleep(db)
        return
    assert gone is not None and gone <= QUERY_GONE, log[-3000:]
    assert "ended 1 backend(s) of children that died without closing" in log, log[-3000:]
    assert worker not in closed(log) and len(closed(log)) == WORKERS - 1, log[-3000:]  # the idle ones closed
    assert code == 0 and "NO MERCY" not in log, log[-3000:]
    poll(lambda: app_backends(db) == 0, timeout=10, what="app backends gone")


KILLS = ["sigkill", "harakiri"]


@pytest.mark.e2e
@pytest.mark.parametrize("reap", [True, False], ids=["reaped", "control"])
@pytest.mark.parametrize("kill", KILLS)
def test_killed_worker_query_ended_by_its_successor(
    kill: str, reap: bool, uwsgi: Start, db: psycopg.Connection
) -> None:
    """A worker SIGKILLed mid-query (kill -9 / the OOM killer, or plain harakiri = 2): the respawned worker ends its
    query within 3 s of its death and serves; without the pid table the query runs on."""
    extra = "harakiri = 2" if kill == "harakiri" else ""
    server = uwsgi(extra=extra, switch="" if reap else NO_REAP)
    all_workers_up(server)
    worker, _ = _busy(server, db)
    if kill == "sigkill":
        os.kill(worker, signal.SIGKILL)
    gone = _gone_after_death(db, worker)
    log = server.log()
    record("uwsgi-killed", f"{kill} {'reaped' if reap else 'control'}", loadgen.Results(), gone_after=gone)
    if not reap:
        assert gone is None, "without the pid table the killed worker's query runs on"
        _end_sleep(db)
        return
    assert gone is not None and gone <= QUERY_GONE, log[-3000:]
    all_workers_up(server, WORKERS + 1)  # the respawned worker warmed
    results = loadgen.run(server.target, 40, concurrency=8)
    assert (results.failed, results.wrong) == (0, 0), results.summary()
    assert f"the process it replaces ({worker}) died without closing: ended 1 backend(s)" in server.log(), log[-3000:]
    all_idle(server)  # a worker still finishing a request would skip its close (uWSGI's choice)
    os.killpg(server.pid, signal.SIGINT)
    assert server.proc.wait(15) == 0
    log = server.log()
    assert len(opened(log) - closed(log)) == 1 and "NO MERCY" not in log, log[-3000:]
    poll(lambda: app_backends(db) == 0, timeout=10, what="app backends gone")
