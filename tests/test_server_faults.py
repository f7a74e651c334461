"""Server-side faults: PostgreSQL restarted under load, and every fork case over TLS.

Each test starts its own PostgreSQL (tests/pgserver.py's PostgresServer), never the
session's shared one: a restart would break every other test, and the wheel's
PostgreSQL has no TLS (the TLS server uses a PostgreSQL built with OpenSSL).
"""

from __future__ import annotations

import asyncio
import json
import re
import secrets
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest

from forkhooks.demo import loadgen

from .harness import app_backends
from .pgserver import PostgresServer, Restart, TLSUnavailable
from .record import record
from .servers import Server, gunicorn, poll, run_json, start

WSGI = "tests.testsite.wsgi:application"
STAR = ["-c", "gunicorn_conf/star.py", "-k", "sync"]

# PostgreSQL restart under load (1).
DOWN = 1.0  # seconds the server stays stopped between `pg_ctl stop -m fast` and start
GRACE = 2.0  # every request started later than this after the server is back must succeed
RECOVERY = 10.0  # bound on the first success after the server is back
BURST = 500  # requests after recovery that must all succeed: no pool hands out a dead connection
LOAD_CONCURRENCY = 8
LOAD_TIMEOUT = 15.0  # per request: above the example pool's 10 s checkout timeout

# TLS (2).
CHILDREN = 50
TLS_REQUESTS = 1000
TLS_ERRORS = re.compile(r"decryption failed or bad record mac|bad record mac|SSL error|SSL SYSCALL", re.I)
SERVER_LOG_ERRORS = re.compile(
    r"decryption failed or bad record mac|bad record mac|unexpected EOF|could not receive data|SSL error", re.I
)


# -- helpers ------------------------------------------------------------------


@dataclass
class Sample:
    """One request of the continuous load: when it ran and how it ended."""

    start: float  # time.monotonic()
    end: float
    outcome: str  # "ok", "failed" or "wrong"
    error: str = ""


@dataclass
class Load:
    """Continuous load from a thread until stopped (bounded in time and count)."""

    target: str
    concurrency: int = LOAD_CONCURRENCY
    max_seconds: float = 90.0
    max_requests: int = 50_000
    samples: list[Sample] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)

    def __enter__(self) -> Load:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(LOAD_TIMEOUT + 10)
        assert not self._thread.is_alive(), "load thread did not stop"

    def ok_since(self, t: float) -> int:
        return sum(1 for s in list(self.samples) if s.outcome == "ok" and s.start >= t)

    def results(self) -> loadgen.Results:
        """The samples as loadgen counts, for record()."""
        out = loadgen.Results()
        for s in self.samples:
            out.requests += 1
            if s.outcome == "ok":
                out.ok += 1
                out.latencies.append(s.end - s.start)
            elif s.outcome == "wrong":
                out.wrong += 1
            else:
                out.failed += 1
                out.errors[s.error] += 1
        return out

    async def _run(self) -> None:
        deadline = time.monotonic() + self.max_seconds

        async def client() -> None:
            while not self._stop.is_set() and time.monotonic() < deadline and len(self.samples) < self.max_requests:
                tag = secrets.token_hex(8)
                start = time.monotonic()
                error = ""
                try:
                    status, body = await asyncio.wait_for(
                        loadgen._request(self.target, f"/echo?tag={tag}", LOAD_TIMEOUT), LOAD_TIMEOUT
                    )
                    answer = json.loads(body) if status == 200 else None
                    if answer is None:
                        error = f"HTTP {status}"
                except Exception as exc:
                    answer, error = None, type(exc).__name__
                if answer is None:
                    outcome = "failed"
                else:
                    outcome = "ok" if answer.get("tag") == tag else "wrong"
                self.samples.append(Sample(start, time.monotonic(), outcome, error))

        await asyncio.gather(*(client() for _ in range(self.concurrency)))


def serve(dsn: str, tmp_path: Path, env: dict[str, str] | None = None) -> Server:
    """gunicorn, 4 preloaded sync workers, forkhooks by `-c gunicorn_conf/star.py`, ready."""
    return start(gunicorn(*STAR, WSGI), dsn, tmp_path, env=env)


def scenario(dsn: str, *args: str) -> tuple[dict[str, Any], str]:
    """Run tests/scenario_discard.py in its own interpreter: (its report, its stderr)."""
    report: dict[str, Any]
    report, stderr = run_json("tests.scenario_discard", dsn, *args, dsn=dsn)
    return report, stderr


@pytest.fixture
def own_pg() -> Iterator[PostgresServer]:
    """A PostgreSQL for this test alone (it gets restarted)."""
    server = PostgresServer()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def tls_pg() -> Iterator[PostgresServer]:
    """A PostgreSQL that takes TCP only over TLS (self-signed), DSN with sslmode=require."""
    try:
        server = PostgresServer(tls=True)
    except TLSUnavailable as exc:
        pytest.skip(str(exc))
    try:
        with psycopg.connect(server.dsn, autocommit=True) as conn:
            row = conn.execute("SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()").fetchone()
        assert row is not None and row[0], f"not a TLS session: {row}"
        yield server
    finally:
        server.stop()


def log_errors(text: str) -> dict[int, list[str]]:
    """Server log lines that report a broken client session, by backend pid."""
    found: dict[int, list[str]] = {}
    for line in text.splitlines():
        match = re.search(r"\[(\d+)\]", line)
        if match and SERVER_LOG_ERRORS.search(line):
            found.setdefault(int(match.group(1)), []).append(line)
    return found


class LogWatch:
    """The part of the server log written since it was created."""

    def __init__(self, server: PostgresServer) -> None:
        self.server = server
        self.offset = len(server.log())

    def new(self) -> str:
        return self.server.log()[self.offset :]


# -- 1. PostgreSQL restart during load ------------------------------------------


@pytest.mark.e2e
def test_restart_under_load_fails_only_during_the_outage_and_recovers(own_pg: PostgresServer, tmp_path: Path) -> None:
    """PostgreSQL restarted (fast stop, 1 s down) under continuous load on 4 gunicorn workers.

    Failures only while it is down: every request started more than GRACE (2 s) after
    the server is back succeeds; the first success after it is back comes within
    RECOVERY (10 s); 0 wrong rows throughout; then a burst of 500 requests has 0
    failures, so no pool kept a dead connection (check=check_connection drops them).
    """
    server = serve(own_pg.dsn, tmp_path)
    try:
        with Load(server.target) as load:
            t0 = time.monotonic()
            poll(lambda: load.ok_since(t0) >= 200, timeout=30, what="200 successes before the restart")
            restart: Restart = own_pg.restart(down=DOWN)
            poll(
                lambda: load.ok_since(restart.ready + GRACE) >= 200,
                timeout=RECOVERY + GRACE + 30,
                what="200 successes after the restart and the grace",
            )
        samples = list(load.samples)
        burst = loadgen.run(server.target, BURST, concurrency=64)
        with psycopg.connect(own_pg.dsn, autocommit=True, application_name="forkhooks-observer") as observer:
            backends_after = app_backends(observer)
    finally:
        code = server.stop()

    failures = [s for s in samples if s.outcome == "failed"]
    wrong = [s for s in samples if s.outcome == "wrong"]
    back = [s for s in samples if s.outcome == "ok" and s.end >= restart.ready and s.start >= restart.stopped]
    first_success = min(s.end for s in back) - restart.ready
    last_failure = max(s.end for s in failures) - restart.ready if failures else None
    late = [s for s in failures if s.start > restart.ready + GRACE]
    early = [s for s in failures if s.end < restart.began]
    during = load.results()
    record(
        "server-faults",
        "pg-restart-load",
        during,
        outage_s=round(restart.outage, 2),
        first_ok_after_s=round(first_success, 2),
        last_fail_after_s=None if last_failure is None else round(last_failure, 2),
        late_failures=len(late),
        slowest_s=round(max(s.end - s.start for s in samples), 2),
        errors=",".join(sorted(during.errors)),
    )
    record("server-faults", "pg-restart-burst", burst, backends_after=backends_after)

    assert wrong == [], f"{len(wrong)} wrong rows under restart"
    assert early == [], f"{len(early)} failures before the restart began"
    assert late == [], f"{len(late)} failures started > {GRACE}s after the server was back: {late[:5]}"
    assert first_success <= RECOVERY, f"first success {first_success:.2f}s after the server was back"
    assert (burst.failed, burst.wrong) == (0, 0), burst.summary()
    assert len(burst.pids) == 4, burst.summary()
    assert code == 0, server.log()[-3000:]


HEALTH = [
    ("health-checks", "tests.testsite.settings"),
    ("no-health-checks", "tests.project.settings_no_health_checks"),
]


@pytest.mark.e2e
@pytest.mark.parametrize(("name", "settings"), HEALTH, ids=[h[0] for h in HEALTH])
def test_idle_restart_leaves_no_dead_connection_in_the_pools(
    own_pg: PostgresServer, tmp_path: Path, name: str, settings: str
) -> None:
    """Pools filled by 300 requests, PostgreSQL restarted while idle, then a burst of 500.

    With CONN_HEALTH_CHECKS (the example's setting: psycopg_pool's check=check_connection)
    the burst has 0 failures although every pooled connection died. The control without
    it hands the dead connections out: the burst fails requests, so this test can fail.
    """
    server = serve(own_pg.dsn, tmp_path, env={"DJANGO_SETTINGS_MODULE": settings})
    try:
        warm = loadgen.run(server.target, 300, concurrency=64)
        restart = own_pg.restart()
        burst = loadgen.run(server.target, BURST, concurrency=64)
    finally:
        code = server.stop()
    suite = "server-faults" if name == "health-checks" else "server-faults-control"
    record(suite, f"pg-idle-restart-burst-{name}", burst, outage_s=round(restart.outage, 2))
    assert (warm.failed, warm.wrong) == (0, 0), warm.summary()
    assert burst.wrong == 0, burst.summary()
    if name == "health-checks":
        assert burst.failed == 0, burst.summary()
        assert len(burst.pids) == 4, burst.summary()
    else:
        assert burst.failed > 0, burst.summary()
    assert code == 0, server.log()[-3000:]


# -- 2. TLS ---------------------------------------------------------------------

TLS_CASES = [("psycopg", "plain"), ("psycopg", "pooled"), ("psycopg2", "plain")]


@pytest.mark.e2e
@pytest.mark.fork
@pytest.mark.parametrize(("driver", "mode"), TLS_CASES, ids=[f"{d}-{m}" for d, m in TLS_CASES])
def test_tls_children_discard_and_the_parents_tls_session_survives(
    tls_pg: PostgresServer, driver: str, mode: str
) -> None:
    """Over TLS (sslmode=require; the server refuses TCP without it): 50 children discard
    and query over their own TLS sessions; the parent's TLS session is the same backend,
    state unchanged, nothing pending; no SSL error in parent, children or server log.
    """
    watch = LogWatch(tls_pg)
    report, stderr = scenario(tls_pg.dsn, "--driver", driver, "--mode", mode, "--children", str(CHILDREN))
    children = report["children"]
    parent = report["parent_backend"]
    record(
        "server-faults",
        f"tls-fork-{driver}-{mode}",
        loadgen.Results(requests=len(children), ok=sum(1 for c in children if c.get("tag_ok"))),
        parent_same=report.get("parent_backend_after") == parent,
    )
    assert [c for c in children if "error" in c] == []
    assert len(children) == CHILDREN and all(c["tag_ok"] for c in children)
    assert parent not in {c["backend"] for c in children}, "a child used the parent's session"
    assert report.get("parent_error") is None
    assert report["parent_backend_after"] == parent
    assert report["after"] == report["before"]
    assert report["pending_bytes"] == 0
    assert not TLS_ERRORS.search(stderr), stderr[-2000:]
    # The server logs "could not receive data from client: Connection reset by peer"
    # for the children's own sessions: each child leaves with os._exit() without
    # closing them (at most one per child, or its pool's max_size of 4). None may be
    # about the parent's backend, and no TLS record may be bad.
    logged = log_errors(watch.new())
    assert not TLS_ERRORS.search(watch.new()), watch.new()[-2000:]
    assert parent not in logged, logged[parent]
    assert len(logged) <= CHILDREN * (4 if mode == "pooled" else 1), logged
    lines = [line for pid_lines in logged.values() for line in pid_lines]
    assert all("could not receive data from client: Connection reset by peer" in line for line in lines), lines


@pytest.mark.e2e
@pytest.mark.fork
@pytest.mark.parametrize("driver", ["psycopg", "psycopg2"])
def test_control_tls_close_in_the_child_kills_the_parents_session(tls_pg: PostgresServer, driver: str) -> None:
    """Control: the naive close() in a child over TLS ends the parent's TLS session."""
    report, _ = scenario(tls_pg.dsn, "--driver", driver, "--children", "1", "--child", "close")
    record(
        "server-faults-control",
        f"tls-close-{driver}",
        loadgen.Results(requests=1, failed=1 if "parent_error" in report else 0),
        parent_error=report.get("parent_error", "").strip()[:60],
    )
    assert report["after"] == {}, "the parent's backend is gone"
    assert "parent_error" in report


@pytest.mark.e2e
@pytest.mark.fork
@pytest.mark.parametrize("driver", ["psycopg", "psycopg2"])
def test_control_tls_children_on_the_inherited_session_break_it(tls_pg: PostgresServer, driver: str) -> None:
    """Control: children that query over the inherited TLS session desynchronise it: the
    server logs "decryption failed or bad record mac" on the parent's backend, a child gets
    the same error, and the parent's session is gone."""
    watch = LogWatch(tls_pg)
    report, _ = scenario(tls_pg.dsn, "--driver", driver, "--children", "5", "--child", "nothing")
    errors = [c["error"] for c in report["children"] if "error" in c]
    logged = log_errors(watch.new())
    parent_lines = logged.get(report["parent_backend"], [])
    record(
        "server-faults-control",
        f"tls-inherited-{driver}",
        loadgen.Results(requests=len(report["children"]), failed=len(errors)),
        parent_error=report.get("parent_error", "").strip()[:60],
        server_log_mac=any("bad record mac" in line for line in parent_lines),
    )
    assert any("decryption failed or bad record mac" in e for e in errors), report
    assert any("decryption failed or bad record mac" in line for line in parent_lines), watch.new()[-2000:]
    assert report["after"] == {}, "the parent's backend is gone"
    assert "parent_error" in report


@pytest.mark.e2e
def test_tls_gunicorn_every_request_gets_its_own_rows(tls_pg: PostgresServer, tmp_path: Path) -> None:
    """gunicorn, 4 preloaded workers, TLS DSN: 1000 requests, 0 failed, 0 wrong, no SSL error logged."""
    watch = LogWatch(tls_pg)
    server = serve(tls_pg.dsn, tmp_path)
    try:
        results = loadgen.run(server.target, TLS_REQUESTS, concurrency=64)
    finally:
        code = server.stop()
    record("server-faults", "tls-gunicorn", results)
    assert results.requests == TLS_REQUESTS
    assert (results.failed, results.wrong) == (0, 0), results.summary()
    assert len(results.pids) == 4, results.summary()
    assert code == 0, server.log()[-3000:]
    assert not TLS_ERRORS.search(server.log()), server.log()[-3000:]
    assert not SERVER_LOG_ERRORS.search(watch.new()), watch.new()[-2000:]
