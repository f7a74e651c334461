"""Celery prefork throughput and connections: Celery's own Django handling vs ``import forkhooks.celery``.

python bench/celery_tasks.py                  # 2 interleaved rounds of 1000 tasks per configuration
python bench/celery_tasks.py --tasks 200 --rounds 1 --no-write   # smoke run

Each round starts a fresh worker (prefork, 4 processes, Redis on a private Unix
socket, Django's pool min 1 / max 4), sends N short tasks (one
``SELECT %s::text, pg_backend_pid()`` through Django each) and times from the
first send to the last answer. Connections opened are PostgreSQL's own count
(pg_stat_database.sessions) over the worker's whole life. The result replaces
the Celery section at the end of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import secrets
import shlex
import statistics
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

# Run as a script (`python bench/celery_tasks.py`): make the repository importable.
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402

from bench import regions  # noqa: E402
from tests.jobrunners import celery, client, collect, sessions, tally  # noqa: E402
from tests.redisserver import RedisServer, find_redis_server  # noqa: E402

SETTINGS = "tests.project.settings_jobs_without"
CONFIGS = [("Celery's own handling", {}), ("forkhooks.celery", {"FORKHOOKS_TEST_CELERY": "1"})]
START, END = "<!-- bench/celery_tasks.py: start -->", "<!-- bench/celery_tasks.py: end -->"


def one_round(dsn: str, sock: Path, tmp: Path, env: dict[str, str], n: int) -> dict[str, float]:
    """One fresh worker, n tasks: tasks/s, connections opened, failed + wrong."""
    from celery import Celery

    client(sock).flushall()
    with psycopg.connect(dsn, autocommit=True, application_name="forkhooks-observer") as db:
        start = sessions(db)
        worker = celery(dsn, sock, tmp, settings=SETTINGS, env=env)
        app = Celery("bench", broker=f"redis+socket://{sock}", set_as_current=False)
        try:
            tags = [f"{i}-{secrets.token_hex(6)}" for i in range(n)]
            t0 = time.perf_counter()
            for tag in tags:
                app.send_task("echo", [tag])
            rows = collect(sock, n, worker, timeout=600, interval=0.01)
            elapsed = time.perf_counter() - t0
            worker.stop()
        finally:
            app.close()
            worker.kill()
        deadline = time.monotonic() + 10
        while (
            time.monotonic() < deadline
            and db.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'"
                " AND application_name <> 'forkhooks-observer'"
            ).fetchone()[0]
        ):  # type: ignore[index]
            time.sleep(0.1)  # a poll: every backend gone, so its session is counted
        opened = sessions(db) - start
    results = tally(tags, rows)
    return {"tps": n / elapsed, "opened": opened, "bad": results.failed + results.wrong}


def section(argv: list[str], n: int, rounds: int, runs: dict[str, list[dict[str, float]]], minutes: float) -> str:
    """The markdown section."""
    versions = ", ".join(
        f"{d} {metadata.version(d)}" for d in ("celery", "billiard", "kombu", "django", "psycopg", "psycopg-pool")
    )
    load = " / ".join(f"{x:.1f}" for x in os.getloadavg())
    lines = [
        START,
        "## Celery: tasks per second and connections opened",
        "",
        f"Written by `{shlex.join(['python', 'bench/celery_tasks.py', *argv])}`, "
        f"{time.strftime('%Y-%m-%d %H:%M %Z')}, {minutes:.1f} min, load average {load} (1/5/15 min) at the end. "
        "**The machine was shared** with other developers' test runs: compare the rows, not the absolute numbers.",
        "",
        f"Celery prefork, 4 processes, Redis broker ({find_redis_server()}, Unix socket), Django's pool min 1 / max 4; "
        f"{n} tasks per round, each one `SELECT %s::text, pg_backend_pid()` through Django; {rounds} rounds, "
        "interleaved, each on a fresh worker; median of the rounds. Connections: PostgreSQL's own count of sessions "
        "started over the worker's life (main process included).",
        "",
        "| configuration | tasks/s | connections opened | per 100 tasks | failed + wrong |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, rs in runs.items():
        tps = statistics.median(r["tps"] for r in rs)
        opened = statistics.median(r["opened"] for r in rs)
        bad = sum(int(r["bad"]) for r in rs)
        lines.append(f"| {name} | {tps:.0f} | {opened:.0f} | {100 * opened / n:.1f} | {bad} |")
    lines += ["", f"Python {platform.python_version()}, {versions}.", END, ""]
    return "\n".join(lines)


def write(path: Path, text: str) -> None:
    """Replace the Celery section of `path` (or append it)."""
    old = path.read_text() if path.exists() else ""
    path.write_text(regions.replace(old, START, END, text))


def main(argv: list[str] | None = None) -> None:
    """Run the rounds and write the section."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--dsn", help="PostgreSQL to use (else FORKHOOKS_DSN, else an embedded one)")
    parser.add_argument("--output", type=Path, default=ROOT / "docs" / "benchmarks.md")
    parser.add_argument("--no-write", action="store_true", help="print the section only")
    args = parser.parse_args(argv)
    binary = find_redis_server()
    if binary is None:
        raise SystemExit("bench/celery_tasks.py needs redis-server (Debian: apt-get install redis-server)")
    started = time.monotonic()
    embedded = None
    dsn = args.dsn or os.environ.get("FORKHOOKS_DSN", "")
    with tempfile.TemporaryDirectory(prefix="forkhooks-bench-celery-") as tmp:
        redis = RedisServer(binary, Path(tmp))
        try:
            if not dsn:
                from forkhooks.demo.embedded import EmbeddedPostgres

                embedded = EmbeddedPostgres()
                dsn = embedded.dsn
            runs: dict[str, list[dict[str, float]]] = {name: [] for name, _ in CONFIGS}
            for i in range(args.rounds):
                for name, env in CONFIGS:
                    r = one_round(dsn, redis.socket, Path(tmp), env, args.tasks)
                    runs[name].append(r)
                    print(f"bench: round {i + 1} {name:<22} {r['tps']:7.0f} tasks/s  {r['opened']:5.0f} connections")
        finally:
            redis.stop()
            if embedded is not None:
                embedded.stop()
    minutes = (time.monotonic() - started) / 60
    text = section(sys.argv[1:] if argv is None else argv, args.tasks, args.rounds, runs, minutes)
    print(text)
    if not args.no_write:
        write(args.output, text)
        print(f"bench: wrote {args.output}")


if __name__ == "__main__":
    main()
