"""On a real application: a Wagtail site from `wagtail start`, preload + forkhooks against lazy loading.

python bench/wagtail.py                # 3 interleaved rounds of 10 s per configuration, 3 kills each
python bench/wagtail.py --quick        # smoke run: 1 round of 1 s, 1 kill, a few visits per check
python bench/wagtail.py --dsn postgresql://...   # else FORKHOOKS_DSN, else an embedded PostgreSQL
python bench/wagtail.py --json out.json          # also write every measurement as JSON

The site is generated into a temporary directory on its own database (tests/wagtailsite): pages with
images, a form page, editors. The load mixes article pages, admin logins and form POSTs (3:1:1) and checks
each answer is its own. It prints, as Markdown:

1. correctness on sync, gthread, gevent and uvicorn workers, with forkhooks and without (failed / wrong);
2. per configuration (preload + forkhooks, lazy; each with and without gc.freeze() in the master before
   forking): visits per second, the workers' total PSS after load, kill-a-worker -> the replacement's first
   answer (-w 1), and visits per second under max_requests churn (each respawn of a lazy worker re-imports
   Django and Wagtail).

It measures; it asserts nothing. Run it alone on the machine: timings on a shared CPU are noise.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

# Run as a script (`python bench/wagtail.py`): make the repository importable.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.procs import pss_kib  # noqa: E402
from forkhooks.demo import loadgen  # noqa: E402
from forkhooks.demo.process import ServerProcess, children, poll  # noqa: E402
from tests import wagtailsite  # noqa: E402

BENCH = Path(__file__).resolve().parent
PYTHON = sys.executable
HOOKS = ["-c", "python:forkhooks.gunicorn"]


@dataclass(frozen=True)
class Config:
    """One way of serving the site."""

    key: str
    what: str
    args: list[str]


CONFIGS = [
    Config("preload+forkhooks", "--preload, forkhooks' hooks", [*HOOKS, "--preload"]),
    Config(
        "preload+forkhooks+freeze",
        "--preload, forkhooks' hooks with FORKHOOKS_GC_FREEZE=1 (gc.freeze() in when_ready)",
        [*HOOKS, "--preload", "--env", "FORKHOOKS_GC_FREEZE=1"],
    ),
    Config("lazy", "no --preload (each worker imports the app), no forkhooks", []),
    Config("lazy+freeze", "no --preload, gc.freeze() in when_ready", ["-c", str(BENCH / "gunicorn_gcfreeze_only.py")]),
]

# (worker class, gunicorn arguments, app) for the correctness table.
WORKER_CLASSES = [
    ("sync", ["-k", "sync"], wagtailsite.WSGI),
    ("gthread", ["-k", "gthread", "--threads", "4"], wagtailsite.WSGI),
    ("gevent", ["-k", "gevent"], wagtailsite.WSGI),
    ("uvicorn", ["-k", "uvicorn_worker.UvicornWorker"], wagtailsite.ASGI),
]


class Stopped(Exception):
    """SIGTERM/SIGHUP arrived: unwind so every finally block cleans up."""


def _stop(signum: int, frame: Any) -> None:
    raise Stopped(signal.Signals(signum).name)


def _answers(server: ServerProcess) -> bool:
    if server.proc.poll() is not None:
        raise RuntimeError(f"server exited with {server.proc.returncode}:\n{server.log()[-3000:]}")
    try:
        return loadgen.get(server.target, "/health")[0] > 0  # a control may answer 500: it is up
    except OSError:
        return False


@contextmanager
def serving(
    site: wagtailsite.WagtailSite,
    tmp: Path,
    name: str,
    args: list[str],
    *,
    app: str = wagtailsite.WSGI,
    workers: int = 4,
) -> Iterator[ServerProcess]:
    """gunicorn on the site, on a Unix socket in `tmp`, once it answers with all its workers; killed on the way out."""
    sock = tmp / f"{name}.sock"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GUNICORN_", "FORKHOOKS_"))}
    env.update(site.env(), PYTHONUNBUFFERED="1")
    argv = [PYTHON, "-m", "gunicorn", "-w", str(workers), "-b", f"unix:{sock}", "--graceful-timeout", "5", *args, app]
    server = ServerProcess(argv, cwd=site.path, env=env, log_path=tmp / f"{name}.log", target=f"unix:{sock}")
    try:
        poll(lambda: _answers(server) and len(children(server.pid)) >= workers, timeout=120, what=f"{name} up")
        yield server
    finally:
        server.stop(timeout=15)


def correctness(site: wagtailsite.WagtailSite, tmp: Path, visits: int) -> list[dict[str, Any]]:
    """Per worker class: failed / wrong with forkhooks (all visits) and without (stops at 3 bad answers)."""
    rows = []
    for name, args, app in WORKER_CLASSES:
        row: dict[str, Any] = {"worker": name}
        for key, extra, kwargs in (
            ("forkhooks", HOOKS, {}),
            ("without", [], {"timeout": 5.0, "stop_after": 3}),
        ):
            with serving(site, tmp, f"{name}-{key}", ["--preload", *extra, *args], app=app) as server:
                r = wagtailsite.drive(server.target, visits, concurrency=8, **kwargs)  # type: ignore[arg-type]
            row[key] = {"visits": r.requests, "failed": r.failed, "wrong": r.wrong, "errors": dict(r.errors)}
            print(f"  {name:8} {key:10} {r.summary()}", flush=True)
        rows.append(row)
    return rows


def throughput(site: wagtailsite.WagtailSite, tmp: Path, config: Config, seconds: float) -> dict[str, Any]:
    """Warm up, then visits/s for `seconds` with 8 clients on 4 sync workers; PSS after load."""
    with serving(site, tmp, config.key, config.args) as server:
        wagtailsite.drive(server.target, 10**9, concurrency=8, seconds=max(1.0, seconds / 3))
        r = wagtailsite.drive(server.target, 10**9, concurrency=8, seconds=seconds)
        workers = children(server.pid)
        return {
            "visits_per_s": r.ok / seconds,
            "failed": r.failed,
            "wrong": r.wrong,
            "p50_ms": r.percentile(50),
            "p99_ms": r.percentile(99),
            "workers_pss_kib": sum(pss_kib(p) for p in workers),
            "master_pss_kib": pss_kib(server.pid),
        }


def _answered_by(target: str) -> int:
    try:
        status, body, _ = wagtailsite.Client(target, 10).request("GET", "/article-001/")
    except OSError:
        return 0
    found = wagtailsite.PID.search(body) if status == 200 else None
    return int(found.group(1)) if found else 0


def respawn(site: wagtailsite.WagtailSite, tmp: Path, config: Config, kills: int) -> list[float]:
    """-w 1: SIGKILL the worker, time until its replacement answers an article page (ms), `kills` times."""
    out = []
    with serving(site, tmp, f"{config.key}-respawn", config.args, workers=1) as server:
        for _ in range(kills):
            old = children(server.pid)[0]
            _answered_by(server.target)  # the worker has served once: it is warm
            started = time.perf_counter()
            os.kill(old, signal.SIGKILL)
            poll(
                lambda old=old: _answered_by(server.target) not in (0, old),  # type: ignore[misc]
                timeout=120,
                interval=0.005,
                what="replacement",
            )
            out.append(1000 * (time.perf_counter() - started))
    return out


def churn(
    site: wagtailsite.WagtailSite, tmp: Path, config: Config, seconds: float, max_requests: int
) -> dict[str, Any]:
    """visits/s with --max-requests (every worker respawns after that many HTTP requests), and how many respawned."""
    args = [*config.args, "--max-requests", str(max_requests)]
    with serving(site, tmp, f"{config.key}-churn", args) as server:
        wagtailsite.drive(server.target, 10**9, concurrency=8, seconds=max(1.0, seconds / 3))
        r = wagtailsite.drive(server.target, 10**9, concurrency=8, seconds=seconds)
        boots = server.log().count("Booting worker")
    return {"visits_per_s": r.ok / seconds, "failed": r.failed, "wrong": r.wrong, "respawns": max(0, boots - 4)}


def _median(xs: list[float]) -> float:
    return statistics.median(xs) if xs else 0.0


def _ratio(value: float, base: float) -> str:
    return f"{value / base:.2f}" if base else "-"


def _versions() -> str:
    names = ("django", "wagtail", "gunicorn", "gevent", "uvicorn-worker", "psycopg", "psycopg-pool")
    found = []
    for name in names:
        try:
            found.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            pass
    return f"Python {platform.python_version()}, " + ", ".join(found)


def report(
    site: wagtailsite.WagtailSite, rows: list[dict[str, Any]], perf: dict[str, Any], s: argparse.Namespace
) -> str:
    """Markdown tables of everything measured."""
    lines = [
        f"Wagtail site built (generate, migrate, populate) in {site.seconds:.1f} s. {_versions()}; "
        f"{os.cpu_count()} CPUs, {platform.machine()}.",
        "",
        "| worker class | with forkhooks: visits / failed / wrong | without: visits / failed / wrong |",
        "|---|---|---|",
    ]
    for row in rows:
        w, c = row["forkhooks"], row["without"]
        lines.append(
            f"| {row['worker']} | {w['visits']} / {w['failed']} / {w['wrong']} "
            f"| {c['visits']} / {c['failed']} / {c['wrong']} |"
        )
    if perf:
        lines += [
            "",
            f"4 sync workers, 8 clients, {s.rounds} round(s) of {s.seconds:g} s (median); respawn with -w 1, "
            f"{s.kills} kill(s); churn with --max-requests {s.max_requests}.",
            "",
            "| configuration | visits/s (× lazy) | workers' PSS MiB (× lazy) | master PSS MiB "
            "| kill -> first answer ms (× lazy) | visits/s with churn (respawns) | churn cost |",
            "|---|---|---|---|---|---|---|",
        ]

        def medians(key: str) -> tuple[float, float, float, float]:
            p = perf[key]
            return (
                _median([r["visits_per_s"] for r in p["runs"]]),
                _median([r["workers_pss_kib"] for r in p["runs"]]) / 1024,
                _median([r["master_pss_kib"] for r in p["runs"]]) / 1024,
                _median(p["respawn_ms"]),
            )

        base = medians("lazy")
        for config in CONFIGS:
            rps, pss, master, respawn_ms = medians(config.key)
            churned = perf[config.key]["churn"]
            # What churn costs this configuration: the share of its own steady throughput it loses.
            cost = f"{1 - churned['visits_per_s'] / rps:.0%}" if rps and churned["respawns"] else "-"
            lines.append(
                f"| {config.key} | {rps:.1f} ({_ratio(rps, base[0])}) | {pss:.0f} ({_ratio(pss, base[1])}) "
                f"| {master:.0f} | {respawn_ms:.0f} ({_ratio(respawn_ms, base[3])}) "
                f"| {churned['visits_per_s']:.1f} ({churned['respawns']}) | {cost} |"
            )
        bad = sum(r["failed"] + r["wrong"] for c in perf.values() for r in [*c["runs"], c["churn"]])
        lines += ["", f"Failed or wrong visits during the performance runs: {bad}."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Build the site, measure, print Markdown (and JSON with --json)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--dsn", default=os.environ.get("FORKHOOKS_DSN"), help="PostgreSQL (else an embedded one)")
    parser.add_argument("--seconds", type=float, default=10.0, help="measured seconds per throughput run")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds over the configurations")
    parser.add_argument("--kills", type=int, default=3, help="worker kills per configuration")
    parser.add_argument("--visits", type=int, default=500, help="visits per worker class in the correctness check")
    parser.add_argument("--max-requests", type=int, default=50, help="gunicorn --max-requests for the churn run")
    parser.add_argument("--correctness-only", action="store_true", help="skip the performance runs")
    parser.add_argument("--quick", action="store_true", help="smoke run: tiny durations and counts")
    parser.add_argument("--json", type=Path, help="also write all measurements here")
    s = parser.parse_args(argv)
    if s.quick:
        s.seconds, s.rounds, s.kills, s.visits, s.max_requests = 1.0, 1, 1, 20, 10
    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGHUP, _stop)
    embedded = None
    if not s.dsn:
        from forkhooks.demo.embedded import EmbeddedPostgres

        embedded = EmbeddedPostgres()
        s.dsn = embedded.dsn
    try:
        with tempfile.TemporaryDirectory(prefix="forkhooks-wagtail-") as tmpdir:
            tmp = Path(tmpdir)
            print("building the Wagtail site ...", flush=True)
            site = wagtailsite.build(tmp / "site", s.dsn)
            try:
                print(f"built in {site.seconds:.1f} s; correctness:", flush=True)
                rows = correctness(site, tmp, s.visits)
                perf: dict[str, Any] = {}
                if not s.correctness_only:
                    perf = {c.key: {"runs": []} for c in CONFIGS}
                    for round_ in range(s.rounds):
                        # Interleaved, and rotated each round, so drift on the machine spreads over all configs.
                        order = CONFIGS[round_ % len(CONFIGS) :] + CONFIGS[: round_ % len(CONFIGS)]
                        for config in order:
                            run = throughput(site, tmp, config, s.seconds)
                            perf[config.key]["runs"].append(run)
                            print(f"  round {round_ + 1} {config.key:26} {run}", flush=True)
                    for config in CONFIGS:
                        perf[config.key]["respawn_ms"] = respawn(site, tmp, config, s.kills)
                        perf[config.key]["churn"] = churn(site, tmp, config, s.seconds, s.max_requests)
                        print(
                            f"  {config.key:26} respawn ms {perf[config.key]['respawn_ms']} "
                            f"churn {perf[config.key]['churn']}",
                            flush=True,
                        )
                text = report(site, rows, perf, s)
                print("\n" + text)
                if s.json:
                    everything = {"correctness": rows, "performance": perf, "args": vars(s)}
                    s.json.write_text(json.dumps(everything, default=str))
            finally:
                wagtailsite.drop(site, s.dsn)
    except Stopped as stop:
        print(f"stopped by {stop}", file=sys.stderr)
        return 1
    finally:
        if embedded is not None:
            embedded.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
