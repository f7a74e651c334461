"""Faults under real gunicorn: recycling, SIGKILL, SIGHUP, worker timeout, a view that forks.

Every case runs gunicorn with 4 preloaded workers, forkhooks' hooks and the example app (Django
pool min_size 2, max_size 4) against a real PostgreSQL, samples the server's backends while it
runs, and bounds every wait.
"""

from __future__ import annotations

import json
import os
import random
import signal
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Self

import psycopg
import pytest

from forkhooks._tools.appname import Role, parse
from forkhooks.demo import loadgen
from forkhooks.demo.loadgen import Results

from .harness import app_backends, sleeping_backends
from .record import record
from .servers import WORKERS, WSGI, Server, booted_workers, children, poll, serve, wait_workers

MIN_SIZE = 2  # tests/testsite/settings.py
MAX_SIZE = 4
STEADY_MAX = WORKERS * MAX_SIZE  # 16: what 4 live workers may hold at most
WARM = WORKERS * MIN_SIZE  # 8: what 4 warm workers hold at least

HOOKS = ["-c", "python:forkhooks.gunicorn"]
KINDS = {"sync": ["-k", "sync"], "gthread": ["-k", "gthread", "--threads", "4"]}


# -- observing the server and the workers -------------------------------------------------------


# pg_stat_activity lists a backend before it knows its application_name (state 'starting',
# PostgreSQL >= 18: authentication still under way; older servers list it only after).
STARTING = "(starting)"


@dataclass
class Sample:
    """One look at pg_stat_activity: backends per application_name."""

    at: float
    names: Counter[str]

    @property
    def total(self) -> int:
        return sum(self.names.values())

    def owners(self) -> Counter[int]:
        """Backends per worker pid (from forkhooks:worker:<pid>)."""
        out: Counter[int] = Counter()
        for name, n in self.names.items():
            who = parse(name)
            if who and who[1] == "worker":
                out[who[2]] += n
        return out

    def unlabelled(self) -> int:
        """Backends past start-up not named forkhooks:worker:<pid> (the master's, or a stranger's).

        The master's short connection that ends a dead worker's backends (role "supervisor") is not
        one it holds: it is closed within the moment.
        """
        supervising = sum(n for name, n in self.names.items() if (parse(name) or (0, ""))[1] == Role.SUPERVISOR.token)
        return self.total - sum(self.owners().values()) - self.names[STARTING] - supervising


class Background:
    """A daemon thread running `_run` between `with` and the end of the block, joined with a bound."""

    join_timeout = 10.0

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(self.join_timeout)
        assert not self._thread.is_alive(), f"{type(self).__name__} did not finish within {self.join_timeout}s"


class OwnerSampler(Background):
    """A thread that reads the server's app backends every `interval` s on its own connection."""

    def __init__(self, dsn: str, interval: float = 0.05) -> None:
        super().__init__()
        self.samples: list[Sample] = []
        self._dsn = dsn
        self._interval = interval

    def _run(self) -> None:
        with psycopg.connect(self._dsn, autocommit=True, application_name="forkhooks-observer") as conn:
            while not self._stop.is_set():
                self.samples.append(sample(conn))
                self._stop.wait(self._interval)

    @property
    def max_total(self) -> int:
        return max((s.total for s in self.samples), default=0)


def sample(db: psycopg.Connection) -> Sample:
    """The server's app backends now, by application_name; one still starting up is named STARTING."""
    rows = db.execute(
        "SELECT CASE WHEN state = 'starting' THEN %s ELSE application_name END, count(*)"
        " FROM pg_stat_activity WHERE backend_type = 'client backend'"
        " AND application_name <> 'forkhooks-observer' GROUP BY 1",
        [STARTING],
    ).fetchall()
    return Sample(time.monotonic(), Counter({r[0]: int(r[1]) for r in rows}))


def owners_now(db: psycopg.Connection) -> Counter[int]:
    """Backends per worker pid right now."""
    return sample(db).owners()


def in_flight(pid: int, sock: Path) -> int:
    """Client connections `pid` holds on the app socket: accepted, not yet closed (its in-flight requests)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(int(target[8:-1]))
    count = 0
    for line in Path("/proc/net/unix").read_text().splitlines()[1:]:
        cols = line.split()
        # Num RefCount Protocol Flags Type St Inode Path; flag 00010000 marks the listening socket.
        if len(cols) == 8 and int(cols[6]) in inodes and cols[7] == str(sock) and cols[3] != "00010000":
            count += 1
    return count


def stopped(pid: int) -> bool:
    """True once `pid` is in state T (stopped by SIGSTOP)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat.rpartition(")")[2].split()[0] == "T"


class Load(Background):
    """Requests in a background thread, chunk after chunk, until stopped; counts add up."""

    join_timeout = 60.0

    def __init__(
        self, target: str, *, path: str = "/echo", concurrency: int = 64, chunk: int = 400, timeout: float = 15
    ) -> None:
        super().__init__()
        self.results = Results()
        self._args = (target, chunk, concurrency, path, timeout)

    def _run(self) -> None:
        target, chunk, concurrency, path, timeout = self._args
        while not self._stop.is_set():
            add(self.results, loadgen.run(target, chunk, concurrency=concurrency, path=path, timeout=timeout))


def add(total: Results, part: Results) -> None:
    total.requests += part.requests
    total.ok += part.ok
    total.failed += part.failed
    total.wrong += part.wrong
    total.pids.update(part.pids)
    total.latencies.extend(part.latencies)
    total.errors.update(part.errors)


@contextmanager
def running(dsn: str, tmp_path: Path, args: list[str], env: dict[str, str] | None = None) -> Iterator[Server]:
    """gunicorn with forkhooks' hooks; stopped with SIGTERM (killed if that fails) at the end."""
    server = serve(dsn, tmp_path, [*HOOKS, *args], WSGI, env=env)
    try:
        yield server
    finally:
        if server.proc.poll() is None:
            server.stop()


def recovery(db: psycopg.Connection, server: Server, *, low: int, high: int, timeout: float = 5.0) -> float:
    """Seconds until every backend belongs to a live worker and their count is within [low, high]."""
    started = time.monotonic()

    def steady() -> bool:
        owners = owners_now(db)
        total = app_backends(db)
        return low <= total <= high and sum(owners.values()) == total and set(owners) <= set(children(server.pid))

    poll(steady, timeout=timeout, what=f"backends back to {low}..{high}, all of live workers")
    return round(time.monotonic() - started, 2)


def extra_pids(samples: list[Sample]) -> int:
    """Most worker pids holding backends at once beyond the 4 workers (one leaving, one warming)."""
    return max((max(0, len(s.owners()) - WORKERS) for s in samples), default=0)


def assert_bounded(samples: list[Sample], *, generations: int = 2) -> None:
    """Every sample: backends are workers' (or starting up), <= max_size per worker, <= 16 + 4 per extra pid.

    A worker that is leaving (recycled, killed, reloaded) and its replacement can both be listed for
    a moment: `generations` of 4 workers at most, so at most 4 x (generations - 1) extra pids.
    """
    assert samples, "no sample taken"
    unlabelled = [s for s in samples if s.unlabelled()]
    assert not unlabelled, f"a backend held by no worker: {unlabelled[0]}"
    assert max(max(s.owners().values(), default=0) for s in samples) <= MAX_SIZE
    over = [s for s in samples if s.total > STEADY_MAX + MAX_SIZE * max(0, len(s.owners()) - WORKERS)]
    assert not over, f"{len(over)} samples over the bound, first {over[0]}"
    assert extra_pids(samples) <= WORKERS * (generations - 1)


def gone_after_shutdown(db: psycopg.Connection) -> None:
    poll(lambda: app_backends(db) == 0, timeout=5, what="all app backends gone after shutdown")


# -- 1. max_requests churn ---------------------------------------------------------------------

CHURN_REQUESTS = 5000


@pytest.mark.e2e
@pytest.mark.parametrize("kind", list(KINDS))
def test_max_requests_churn_keeps_every_answer_right_and_backends_bounded(
    kind: str, dsn: str, db: psycopg.Connection, tmp_path: Path
) -> None:
    """--max-requests 50 ±10, 5000 requests: 0 failed, 0 wrong; backends bounded throughout; 0 after shutdown.

    Bound, per 50 ms sample: every backend is a worker's (forkhooks:worker:<pid>), each worker holds
    at most max_size 4, and the total is at most 4 workers x 4 = 16 plus 4 for each extra pid seen:
    a recycled worker's backends are still listed while its replacement warms (the old one closes
    its pool in worker_exit, the master forks the new one once it has reaped the old). At most one
    such overlap per worker slot: extra pids <= 4.
    """
    args = [*KINDS[kind], "--max-requests", "50", "--max-requests-jitter", "10"]
    with running(dsn, tmp_path, args) as server, OwnerSampler(dsn) as sampler:
        results = loadgen.run(server.target, CHURN_REQUESTS, concurrency=64)
    gone_after_shutdown(db)
    booted = len(booted_workers(server.log()))
    record(
        "faults",
        f"max-requests-{kind}",
        results,
        booted=booted,
        max_backends=sampler.max_total,
        max_extra_pids=extra_pids(sampler.samples),
        samples=len(sampler.samples),
    )
    assert results.requests == CHURN_REQUESTS
    assert (results.failed, results.wrong) == (0, 0), results.summary()
    # A worker serves 50..60 requests plus what it had already accepted (gthread: its queue).
    assert booted >= WORKERS + CHURN_REQUESTS // 150, f"only {booted} workers booted: no churn"
    assert_bounded(sampler.samples)


# -- 2. SIGKILL in the middle of a request -----------------------------------------------------

KILLS = 20


def kill_mid_request(server: Server, workers: set[int], *, attempts: int = 200) -> tuple[int, int]:
    """Freeze a worker that holds at least one client connection, count them, SIGKILL it: (pid, in-flight).

    SIGSTOP first, so the count is exact: a stopped worker accepts and answers nothing more.
    """
    for _ in range(attempts):
        pid = random.choice(sorted(workers))
        os.kill(pid, signal.SIGSTOP)
        poll(partial(stopped, pid), timeout=5, what=f"worker {pid} stopped", interval=0.001)
        held = in_flight(pid, server.sock)
        if held:
            os.kill(pid, signal.SIGKILL)
            return pid, held
        os.kill(pid, signal.SIGCONT)  # idle between two requests: not this time
    raise AssertionError(f"no worker was in a request in {attempts} tries")


@pytest.mark.e2e
@pytest.mark.parametrize("kind", list(KINDS))
def test_sigkill_mid_request_fails_only_that_workers_requests(
    kind: str, dsn: str, db: psycopg.Connection, tmp_path: Path
) -> None:
    """20 SIGKILLs of a worker in a request, under load: failed <= requests it held, 0 wrong, clean replacements.

    In-flight at kill time = client connections the frozen worker had accepted and not closed (a
    sync worker holds at most 1; a gthread worker also its accepted queue). Each replacement logs
    its discard; 5 s after the load stops every backend is a live worker's, 8 <= count <= 16.
    """
    kills: list[tuple[int, int]] = []
    boot_times: list[float] = []
    with running(dsn, tmp_path, KINDS[kind]) as server, OwnerSampler(dsn) as sampler:
        workers = first = wait_workers(server)
        with Load(server.target) as load:
            for _ in range(KILLS):
                killed_at = time.monotonic()
                victim, held = kill_mid_request(server, workers)
                kills.append((victim, held))
                workers = wait_workers(server, excluding={v for v, _ in kills})
                boot_times.append(time.monotonic() - killed_at)
        back = recovery(db, server, low=WARM, high=STEADY_MAX)
        log = server.log()
    gone_after_shutdown(db)
    results = load.results
    held_total = sum(h for _, h in kills)
    replacements = booted_workers(log) - first
    record(
        "faults",
        f"sigkill-{kind}",
        results,
        kills=len(kills),
        in_flight=held_total,
        max_in_flight=max(h for _, h in kills),
        max_backends=sampler.max_total,
        respawn_s=round(max(boot_times), 2),
        recovery_s=back,
    )
    assert (results.wrong, len(kills)) == (0, KILLS), results.summary()
    assert results.failed <= held_total, f"{results.summary()}; in flight at the kills: {held_total}"
    if kind == "sync":
        assert max(h for _, h in kills) == 1, kills  # one request at a time
    assert len(replacements) == KILLS, replacements
    for pid in replacements:
        assert f"forkhooks: worker {pid} discarded" in log, pid
    assert_bounded(sampler.samples)


# -- 3. SIGHUP reload --------------------------------------------------------------------------

RELOADS = 10


@pytest.mark.e2e
def test_sighup_reloads_under_load_lose_nothing_and_grow_nothing(
    dsn: str, db: psycopg.Connection, tmp_path: Path
) -> None:
    """10 SIGHUPs under load (sync): 0 failed, 0 wrong, at most 2 generations' backends, back to exactly 8.

    On HUP gunicorn reloads its config (with --preload the app stays loaded in the master: no new
    start-up query), forks 4 new workers (pre_fork/post_fork run for each) and sends SIGTERM to the 4
    old ones, which finish the request in hand and exit (worker_exit closes their pools). Requests
    waiting in the listen backlog go to whichever worker accepts next, so none is lost. Each reload
    is let complete (4 new warmed workers, the old ones gone) before the next.
    """
    with running(dsn, tmp_path, KINDS["sync"]) as server, OwnerSampler(dsn) as sampler:
        workers = wait_workers(server)
        poll(lambda: app_backends(db) == WARM, timeout=10, what="4 warm workers")
        steady = app_backends(db)
        durations: list[float] = []
        with Load(server.target) as load:
            for _ in range(RELOADS):
                started = time.monotonic()
                os.kill(server.pid, signal.SIGHUP)
                workers = wait_workers(server, excluding=workers)
                durations.append(time.monotonic() - started)
        back = recovery(db, server, low=steady, high=steady)
        log = server.log()
    gone_after_shutdown(db)
    results = load.results
    record(
        "faults",
        "sighup-sync",
        results,
        reloads=log.count("Hang up"),
        max_backends=sampler.max_total,
        steady=steady,
        reload_s=round(max(durations), 2),
        recovery_s=back,
    )
    assert log.count("Hang up") == RELOADS
    assert (results.failed, results.wrong) == (0, 0), results.summary()
    assert len(booted_workers(log)) == WORKERS * (RELOADS + 1)
    assert_bounded(sampler.samples)
    assert sampler.max_total <= 2 * steady  # old and new generation, each at min_size


# -- 4. worker timeout -------------------------------------------------------------------------

# A backend running a query reads its socket only when the query ends (PostgreSQL checks for a
# gone client during a query only with client_connection_check_interval, off by default): closing
# alone leaves it sleeping out the 30 s, measured 28 s after the abort. forkhooks cancels the query
# first, so the bound is 5 s, far below what is left of the sleep.
SLEEP = 30
GONE_WITHIN = 5.0


@pytest.mark.e2e
def test_worker_timeout_aborts_the_worker_and_frees_its_backends(
    dsn: str, db: psycopg.Connection, tmp_path: Path
) -> None:
    """--timeout 2, a view in pg_sleep(30): WORKER TIMEOUT, worker_abort logs 'closed', its backends gone within 5 s.

    gunicorn sends SIGABRT; the worker's handler runs worker_abort between two waits of psycopg's
    query loop. The backend that was running pg_sleep and every backend named after the aborted
    worker (forkhooks:worker:<pid>) must be gone from pg_stat_activity; the workers, the
    replacement among them, then answer 200 requests right.
    """
    with running(dsn, tmp_path, [*KINDS["sync"], "--timeout", "2"]) as server:
        wait_workers(server)
        pool = ThreadPoolExecutor(1)
        slow = pool.submit(loadgen.get, server.target, f"/slow?seconds={SLEEP}&tag=slow", SLEEP + 10)
        found: list[tuple[int, str]] = []

        def sleeping() -> bool:
            found[:] = sleeping_backends(db)
            return bool(found)

        poll(sleeping, timeout=10, what="a worker's backend in pg_sleep")
        ((backend, name),) = found
        worker = parse(name)[2]  # type: ignore[index]
        poll(lambda: f"WORKER TIMEOUT (pid:{worker})" in server.log(), timeout=10, what="gunicorn's WORKER TIMEOUT")
        aborted_at = time.monotonic()
        poll(lambda: worker not in children(server.pid), timeout=10, what="the aborted worker gone")

        def released() -> bool:
            return not db.execute(
                "SELECT 1 FROM pg_stat_activity WHERE pid = %s OR application_name = %s", [backend, name]
            ).fetchall()

        poll(released, timeout=GONE_WITHIN + SLEEP, what="the aborted worker's backends gone")
        freed_after = round(time.monotonic() - aborted_at, 2)
        status: int | str
        try:
            status = slow.result(SLEEP + 15)[0]
        except Exception as exc:  # the connection closed under the request
            status = type(exc).__name__
        pool.shutdown()
        after = loadgen.run(server.target, 200, concurrency=8)
        log = server.log()
    gone_after_shutdown(db)
    record("faults", "timeout-sync", after, freed_s=freed_after, slow_request=status)
    assert f"forkhooks: worker {worker} closed" in log
    assert freed_after <= GONE_WITHIN, f"backend {backend} of aborted worker {worker} lived {freed_after}s"
    assert (after.failed, after.wrong) == (0, 0), after.summary()


# -- 5. a view that forks while the worker's other threads hold connections --------------------

FORKING = 200  # /fork-echo requests (one os.fork() each)
HOLD = "/slow/0.1"  # requests that hold a pooled connection 100 ms each, on the other threads


@dataclass
class ForkAnswers:
    """Answers of /fork-echo: the child's row must be the request's own, on a backend of its own."""

    results: Results
    held: list[int]  # pooled connections the worker's other threads held at each fork


def fork_requests(target: str, n: int, concurrency: int, timeout: float) -> ForkAnswers:
    """GET /fork-echo?tag=… n times, `concurrency` at once; counts like the load generator's."""
    results, held = Results(), []
    lock = threading.Lock()

    def one(i: int) -> None:
        tag = f"{i}-{random.getrandbits(48):012x}"
        try:
            status, body = loadgen.get(target, f"/fork-echo?tag={tag}", timeout)
            answer = json.loads(body) if status == 200 else None
        except Exception as exc:
            status, answer = 0, None
            with lock:
                results.errors[type(exc).__name__] += 1
        with lock:
            results.requests += 1
            if answer is None:
                results.failed += 1
                if status:
                    results.errors[f"HTTP {status}"] += 1
            elif answer["tag"] != tag:
                results.wrong += 1
            else:
                results.ok += 1
                results.pids[answer["pid"]] += 1
                held.append(answer["held"])

    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(one, range(n)))
    return ForkAnswers(results, held)


@pytest.mark.e2e
@pytest.mark.parametrize("app", [True, False], ids=["forkhooks.django", "control"])
def test_view_forks_while_other_threads_hold_pooled_connections(
    app: bool, dsn: str, db: psycopg.Connection, tmp_path: Path
) -> None:
    """gthread x4: 200 views fork while the other threads hold pooled connections: 0 failed, 0 wrong anywhere.

    The child queries through Django and exits; the forking thread queries meanwhile. With the
    forkhooks.django app (the at-fork discard) the child gets a fresh pool and backend. The control,
    gunicorn's hooks alone, leaves the child the worker's pool: it takes the same idle connection
    as the parent thread (or waits on a pool with no threads), and requests fail or get wrong rows.
    """
    env = {"FORKHOOKS_EXAMPLE_APPS": "forkhooks.django"} if app else {}
    # The control hangs on shared sockets: few requests, short timeouts, rounds of one request per client.
    n, timeout = (FORKING, 15.0) if app else (12, 4.0)
    with running(dsn, tmp_path, KINDS["gthread"], env=env) as server:
        wait_workers(server)
        with Load(server.target, path=HOLD, concurrency=12, chunk=12, timeout=timeout) as holding:
            forks = fork_requests(server.target, n, concurrency=4, timeout=timeout)
        log = server.log()
        if not app:
            server.kill()
    if app:
        gone_after_shutdown(db)
    both = Results()
    add(both, forks.results)
    add(both, holding.results)
    held_3 = sum(h >= 3 for h in forks.held)
    record(
        "faults",
        f"fork-in-view-{'forkhooks' if app else 'control'}",
        forks.results,
        holding_requests=holding.results.requests,
        holding_failed=holding.results.failed,
        holding_wrong=holding.results.wrong,
        forks_with_3_held=held_3,
    )
    if app:
        assert (forks.results.requests, both.failed, both.wrong) == (FORKING, 0, 0), (
            f"forks: {forks.results.summary()}; holding: {holding.results.summary()}"
        )
        assert held_3 >= FORKING // 10, f"only {held_3} forks with 3 connections held by other threads"
        assert "forkhooks: forked child" in log
    else:
        assert both.failed + both.wrong > 0, f"forks: {forks.results.summary()}; holding: {holding.results.summary()}"
