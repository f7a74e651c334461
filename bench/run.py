"""Benchmark forkhooks against the alternatives on the example app and write docs/benchmarks.md.

python bench/run.py                 # full run: 3 interleaved rounds of 10 s per configuration
python bench/run.py --quick         # smoke run: 1 round of 1 s
python bench/run.py --dsn postgresql://...   # else FORKHOOKS_DSN, else an embedded PostgreSQL
python bench/run.py --only mysql    # only the MySQL section, the rest of the file kept as it is
python bench/run.py --no-mysql      # skip it (it is skipped anyway when no MariaDB is found)
python bench/run.py --mysql-dsn mysql://...  # else FORKHOOKS_TEST_MYSQL_DSN, else a private mariadbd
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

# Run as a script (`python bench/run.py`): make the repository importable.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import load, mysql, procs, regions  # noqa: E402
from bench.procs import ROOT, Gunicorn  # noqa: E402
from forkhooks.demo.process import poll  # noqa: E402

BENCH = ROOT / "bench"
HOOKS = ["-c", "python:forkhooks.gunicorn"]


@dataclass(frozen=True)
class Config:
    """One way of running the example app under gunicorn."""

    key: str
    what: str
    args: list[str]
    env: dict[str, str] = field(default_factory=dict)
    wsgi: str = procs.WSGI


POOL_OFF = {"FORKHOOKS_EXAMPLE_POOL": "0", "FORKHOOKS_EXAMPLE_CONN_MAX_AGE": "0"}
CONFIGS = [
    Config("forkhooks", "preload + pool + forkhooks", [*HOOKS, "--preload"]),
    Config("lazy", "lazy loading (no --preload) + pool, no forkhooks", []),
    # Preloaded with forkhooks, so the only difference from the first row is the pool.
    Config(
        "per-request",
        "connect per request (no pool, CONN_MAX_AGE=0), preload + forkhooks",
        [*HOOKS, "--preload"],
        POOL_OFF,
    ),
    Config(
        "getpid",
        "preload + pool behind a getpid() check on every pool access, no forkhooks",
        ["--preload"],
        {"FORKHOOKS_EXAMPLE_ENGINE": "bench.getpid_backend"},
    ),
    Config(
        "forkhooks+freeze",
        "preload + pool + forkhooks + gc.freeze() in when_ready",
        ["-c", str(BENCH / "gunicorn_gcfreeze.py"), "--preload"],
    ),
    Config(
        "lazy+freeze",
        "lazy + pool + gc.freeze() in when_ready (control)",
        ["-c", str(BENCH / "gunicorn_gcfreeze_only.py")],
    ),
]


MYSQL_ENV = {"DJANGO_SETTINGS_MODULE": mysql.SETTINGS}
MYSQL_CONFIGS = [
    Config("mysql-forkhooks", "preload + forkhooks", [*HOOKS, "--preload"], MYSQL_ENV, mysql.WSGI),
    Config("mysql-lazy", "lazy loading (no --preload), no forkhooks", [], MYSQL_ENV, mysql.WSGI),
    # The broken setup forkhooks fixes: measured only to show what it returns (see the section's notes).
    Config(
        "mysql-preload",
        "preload, no forkhooks (the workers share the master's session)",
        ["--preload"],
        MYSQL_ENV,
        mysql.WSGI,
    ),
]
MYSQL_START, MYSQL_END = "<!-- bench/run.py mysql: start -->", "<!-- bench/run.py mysql: end -->"
CELERY_START = "<!-- bench/celery_tasks.py: start -->"


@dataclass
class Settings:
    """Durations and counts for one benchmark run."""

    duration: float
    warmup: float
    rounds: int
    forks: int
    kills: int
    workers: int = 4
    connections: int = 8


@dataclass
class Run:
    """One configuration, one round."""

    load: load.Load
    workers_pss_kib: int
    master_pss_kib: int
    backends: int  # client backends on the server after load: the workers' and the master's connections


class Stopped(Exception):
    """SIGTERM/SIGHUP arrived: unwind so every finally block cleans up."""


def _stop(signum: int, frame: FrameType | None) -> None:
    raise Stopped(signal.Signals(signum).name)


LOGS = Path(os.environ.get("TMPDIR", "/tmp"))


@contextmanager
def serving(config: Config, dsn: str, workers: int, extra_env: dict[str, str] | None = None) -> Iterator[Gunicorn]:
    """A ready gunicorn for `config`, stopped (and its group killed) on the way out."""
    log_path = LOGS / f"forkhooks-bench-{os.getpid()}-{config.key}.log"
    env = {**config.env, **(extra_env or {})}
    server = Gunicorn(config.args, dsn, env, log_path, workers=workers, wsgi=config.wsgi)
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()
        log_path.unlink(missing_ok=True)


def throughput_round(
    config: Config,
    dsn: str,
    s: Settings,
    sessions: Callable[[], int] | None = None,
    *,
    check: bool = False,
    env: dict[str, str] | None = None,
) -> Run:
    """Start `config`, warm it up under load, measure for s.duration, then sum the workers' PSS.

    `sessions` counts the database's client sessions (default: PostgreSQL's backends on `dsn`);
    `check`: the measured load checks every answer's row (unique tags; see bench/load.py).
    """
    with serving(config, dsn, s.workers, env) as server:
        load.run(server.target, s.warmup, connections=s.connections)
        measured = load.run(server.target, s.duration, connections=s.connections, check=check)
        # After load: what each worker has touched (and so copied) is what it costs.
        # A worker replaced just now (a preloaded MySQL worker without forkhooks can hang on the shared
        # session until gunicorn's timeout kills it) is back within a bound.
        poll(lambda: len(server.worker_pids()) == s.workers, timeout=15, what=f"{config.key}: {s.workers} workers")
        pids = server.worker_pids()
        count = sessions() if sessions is not None else backends(dsn)
        return Run(measured, sum(procs.pss_kib(p) for p in pids), procs.pss_kib(server.proc.pid), count)


def backends(dsn: str) -> int:
    """Client backends on the server, other than the one asking."""
    import psycopg

    with psycopg.connect(dsn, autocommit=True, connect_timeout=10) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()"
        ).fetchone()
    return int(row[0]) if row else 0


def fork_cost(dsn: str, forks: int) -> dict[str, Any]:
    """Run bench/forkcost.py in a fresh process and return its JSON."""
    done = subprocess.run(
        [procs.PYTHON, str(BENCH / "forkcost.py"), str(forks)],
        cwd=procs.EXAMPLES,
        env=procs.child_env(dsn, {}),
        capture_output=True,
        text=True,
        timeout=60 + forks * 0.5,
    )
    line = next((x for x in done.stdout.splitlines() if x.startswith("FORKCOST ")), None)
    if done.returncode or line is None:
        raise RuntimeError(f"forkcost failed ({done.returncode}):\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(line.removeprefix("FORKCOST "))
    return result


RESPAWN = [
    ("preload + forkhooks, FORKHOOKS_WARM=1", CONFIGS[0], {"FORKHOOKS_WARM": "1"}),
    ("preload + forkhooks, FORKHOOKS_WARM=0", CONFIGS[0], {"FORKHOOKS_WARM": "0"}),
    ("lazy + pool (reference: the new worker imports Django)", CONFIGS[1], {}),
]


def respawn(config: Config, env: dict[str, str], dsn: str, kills: int) -> dict[str, list[float]]:
    """With 1 worker: SIGKILL it and time its replacement (see docs/benchmarks.md for what each number is)."""
    out: dict[str, list[float]] = {"kill_to_first_ms": [], "first_request_ms": [], "steady_ms": []}
    with serving(config, dsn, 1, env) as server:
        server.echo("steady")
        for i in range(kills):
            for mode in ("at_kill", "after_boot"):
                (old,) = server.worker_pids()
                started = time.perf_counter()
                os.kill(old, signal.SIGKILL)
                if mode == "at_kill":
                    # Sent at once: it waits in the listen backlog (the master owns the
                    # socket) until the replacement accepts it.
                    answer = server.echo(f"k{i}", timeout=30)
                    out["kill_to_first_ms"].append(1000 * (time.perf_counter() - started))
                else:
                    poll(
                        lambda old=old: len(pids := server.worker_pids()) == 1 and old not in pids,
                        timeout=30,
                        what="replacement worker",
                    )
                    # Let it finish booting (warm-up included), so this request sees an idle,
                    # booted worker: the difference warm-up makes is on this first request.
                    time.sleep(1.0)
                    started = time.perf_counter()
                    answer = server.echo(f"b{i}", timeout=30)
                    out["first_request_ms"].append(1000 * (time.perf_counter() - started))
                    started = time.perf_counter()
                    server.echo(f"s{i}", timeout=30)
                    out["steady_ms"].append(1000 * (time.perf_counter() - started))
                if answer["pid"] == old:
                    raise RuntimeError(f"the killed worker {old} answered")
    return out


# --- report -------------------------------------------------------------------------------------------


def _median(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def _p99(xs: list[float]) -> float:
    ordered = sorted(xs)
    return ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))] if ordered else float("nan")


def _freeze_verdict(runs: dict[str, list[Run]], saved_mib: float, base_mib: float, workers: int) -> str:
    """Say whether freezing paid with --preload: only when every frozen round beats every plain one."""
    frozen = [r.workers_pss_kib for r in runs["forkhooks+freeze"]]
    plain = [r.workers_pss_kib for r in runs["forkhooks"]]
    if max(frozen) < min(plain):
        return (
            f"A consistent but small saving (every frozen round below every plain one): "
            f"{-saved_mib / workers * 1024:.0f} KiB per worker, {-100 * saved_mib / base_mib:.1f} % of worker PSS."
        )
    return "Within noise: the rounds overlap, so freezing does not measurably pay after this load."


def _sh(cmd: list[str]) -> str:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return "?"


def machine() -> list[str]:
    """nproc, CPU model, memory, kernel."""
    cpu = next((x.split(":", 1)[1].strip() for x in open("/proc/cpuinfo") if x.startswith("model name")), "?")
    mem_kib = next(int(x.split()[1]) for x in open("/proc/meminfo") if x.startswith("MemTotal:"))
    return [
        f"- CPUs: {os.cpu_count()} (`nproc`: {_sh(['nproc'])}), {cpu}",
        f"- memory: {mem_kib / 1024 / 1024:.1f} GiB",
        f"- kernel: {platform.system()} {platform.release()}",
    ]


def versions(dsn: str) -> list[str]:
    """Python, Django, gunicorn, psycopg, psycopg_pool, libpq, PostgreSQL, the load generator, forkhooks."""
    import django
    import gunicorn
    import psycopg
    import psycopg_pool

    import forkhooks

    with psycopg.connect(dsn, connect_timeout=10) as conn:
        server = str(conn.execute("SHOW server_version").fetchone()[0])  # type: ignore[index]
    commit = _sh(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"])
    dirty = " (+ uncommitted changes)" if _sh(["git", "-C", str(ROOT), "status", "--porcelain", "forkhooks"]) else ""
    gen = _sh(["wrk", "-v"]).splitlines()[0] if load.tool() == "wrk" else "forkhooks/loadgen.py (wrk not installed)"
    return [
        f"- Python {platform.python_version()}, Django {django.__version__}, gunicorn {gunicorn.__version__}",
        f"- psycopg {psycopg.__version__} (libpq {psycopg.pq.version()}), psycopg_pool {psycopg_pool.__version__}",
        f"- PostgreSQL {server} ({'embedded, Unix socket' if 'host=/' in dsn else 'FORKHOOKS_DSN / --dsn'})",
        f"- load generator: {gen}",
        f"- forkhooks {forkhooks.__version__} at {commit}{dirty}",
    ]


def config_commands(configs: list[Config], s: Settings, *, check: bool = False) -> list[str]:
    """One gunicorn command per configuration, then the load run on each."""
    lines = []
    for c in configs:
        env = " ".join(f"{k}={v}" for k, v in c.env.items())
        argv = procs.gunicorn_argv(c.args, 0, s.workers, c.wsgi)
        argv[0] = "python"
        cmd = shlex.join(argv).replace("127.0.0.1:0", "127.0.0.1:$PORT").replace(str(ROOT), "..")
        lines += [f"# {c.key}: {c.what}", f"{env + ' ' if env else ''}{cmd}"]
    if load.tool() == "wrk":
        warm = load.wrk_argv("127.0.0.1:$PORT", s.warmup, s.connections)
        meas = load.wrk_argv("127.0.0.1:$PORT", s.duration, s.connections, check=check)
        lines += [
            "# load, on each: warm-up, then the measured run",
            shlex.join(warm).replace(str(ROOT), "..").replace("'", ""),
            shlex.join(meas).replace(str(ROOT), "..").replace("'", ""),
        ]
    else:
        lines += [
            f"# load: forkhooks.loadgen.run, {s.connections} concurrent, {s.warmup:g} s warm-up, {s.duration:g} s"
        ]
    return lines


def commands(s: Settings) -> list[str]:
    """The exact commands, one block per configuration."""
    lines = ["```sh", "cd examples && export FORKHOOKS_DSN=<dsn> PYTHONPATH=.:..", *config_commands(CONFIGS, s)]
    lines += [
        "# fork to first response: the forkhooks command with -w 1 and FORKHOOKS_WARM=1, then =0; the lazy one",
        "# with -w 1; kill -KILL <worker pid>, then GET /echo",
        "# post_fork cost, from examples/ with DJANGO_SETTINGS_MODULE=tests.testsite.settings:",
        f"python ../bench/forkcost.py {s.forks}",
        "```",
    ]
    return lines


def report(
    s: Settings,
    dsn: str,
    argv: list[str],
    runs: dict[str, list[Run]],
    fork: dict[str, Any],
    spawn: list[tuple[str, dict[str, list[float]]]],
    elapsed: float,
) -> str:
    """docs/benchmarks.md."""
    rps = {k: _median([r.load.rps for r in v]) for k, v in runs.items()}
    p99 = {k: _median([r.load.p99_ms for r in v]) for k, v in runs.items()}
    best = {k: max(r.load.rps for r in v) for k, v in runs.items()}
    mem = {k: _median([r.workers_pss_kib / 1024 for r in v]) for k, v in runs.items()}
    base = "forkhooks"
    load_avg = " / ".join(f"{x:.1f}" for x in os.getloadavg()) + " (1/5/15 min) at the end"
    out = [
        "# Benchmarks",
        "",
        "Written by `bench/run.py`; do not edit by hand, run it again:",
        "",
        f"```sh\n{shlex.join(['python', 'bench/run.py', *argv])}\n```",
        "",
        f"{time.strftime('%Y-%m-%d %H:%M %Z')}, {elapsed / 60:.1f} min, load average {load_avg}. "
        "The demo's project (`forkhooks/demo/site`, served as `tests/testsite`), "
        f"`GET /echo?tag=bench`: one `SELECT %s::text, pg_backend_pid()` per request through Django. "
        f"gunicorn `sync` workers, {s.workers} of them; {s.connections} concurrent connections.",
        "",
        "**These machines are noisy** (shared, other developers run tests at the same time): each configuration",
        f"ran {s.rounds} time(s), interleaved (round 1 of every configuration, then round 2, ...), each on a fresh",
        f"gunicorn, {s.warmup:g} s warm-up then {s.duration:g} s measured; tables show the median.",
        "",
        "## Machine",
        "",
        *machine(),
        "",
        "## Versions",
        "",
        *versions(dsn),
        "",
        "## Throughput and latency",
        "",
        "Best round: noise on a shared machine only ever lowers throughput, so the best of the rounds is shown",
        "too; ratios are of medians. *Server connections*: client backends on PostgreSQL right after the",
        "measured run (median), the workers' and the master's.",
        "",
        "| configuration | what | req/s (median) | × forkhooks | req/s per round | best round × forkhooks's best "
        "| p99 ms | p99 × forkhooks | errors | server connections |",
        "|---|---|---:|---:|---|---:|---:|---:|---:|---:|",
    ]
    for c in CONFIGS:
        rs = runs[c.key]
        per_round = " / ".join(f"{r.load.rps:.0f}" for r in rs)
        errors = sum(r.load.errors for r in rs)
        conns = _median([r.backends for r in rs])
        out.append(
            f"| `{c.key}` | {c.what} | {rps[c.key]:.0f} | {rps[c.key] / rps[base]:.2f} | {per_round} | "
            f"{best[c.key] / best[base]:.2f} | {p99[c.key]:.1f} | {p99[c.key] / p99[base]:.2f} | {errors} | {conns:g} |"
        )
    out += [
        "",
        "## Worker memory",
        "",
        f"Sum of `Pss` from `/proc/<pid>/smaps_rollup` over the {s.workers} workers, read after the warm-up and the",
        "measured run (so each worker has touched — and copied — what serving needs). PSS splits each shared page",
        "between the processes sharing it; the master's own PSS is shown apart.",
        "",
        "| configuration | workers' PSS, total MiB (median) | per worker MiB | per round | master PSS MiB "
        "| × forkhooks |",
        "|---|---:|---:|---|---:|---:|",
    ]
    for c in CONFIGS:
        rs = runs[c.key]
        master = _median([r.master_pss_kib / 1024 for r in rs])
        per_round = " / ".join(f"{r.workers_pss_kib / 1024:.1f}" for r in rs)
        out.append(
            f"| `{c.key}` | {mem[c.key]:.1f} | {mem[c.key] / s.workers:.1f} | {per_round} | {master:.1f} | "
            f"{mem[c.key] / mem[base]:.2f} |"
        )
    freeze = mem["forkhooks+freeze"] - mem["forkhooks"]
    lazy_freeze = mem["lazy+freeze"] - mem["lazy"]
    out += [
        "",
        f"**Does `gc.freeze()` pay?** With `--preload`: {mem['forkhooks']:.1f} → {mem['forkhooks+freeze']:.1f} MiB "
        f"({freeze:+.1f} MiB, {100 * freeze / mem['forkhooks']:+.1f} %) for the {s.workers} workers. "
        f"Lazy (control, the master has not loaded the app): {mem['lazy']:.1f} → {mem['lazy+freeze']:.1f} MiB "
        f"({lazy_freeze:+.1f} MiB). " + _freeze_verdict(runs, freeze, mem["forkhooks"], s.workers),
        "",
        "`gc.freeze()` runs in the master from `bench/gunicorn_gcfreeze.py` (forkhooks' `when_ready`, then the",
        "freeze):",
        "objects the master loaded move to a permanent generation the workers' collector never walks, so a",
        "collection in a worker does not write to (and copy) the pages holding them. Reference counts are still",
        "written on every use, so pages the workers actually use are copied either way.",
        "",
        "## Cost of `post_fork` (`forkhooks.discard()`)",
        "",
        f"`bench/forkcost.py`: a process with Django set up and the start-up query run forks {s.forks} children per",
        "row; each child times `forkhooks.discard()` with `time.perf_counter_ns()` and reports it through a pipe.",
        "*Logged* is what gunicorn's `post_fork` runs (one log line to stderr); *silent* passes a logger that drops",
        "the line. Most of the time is copy-on-write page faults: the first touch of each page after fork.",
        f"Parent state at fork in the first rows: {fork['state']}.",
        "",
        "| parent at fork | discard() | median µs | p99 µs | max µs |",
        "|---|---|---:|---:|---:|",
    ]
    phases = {
        "open_pool": "open pool + pooled connection (worst case: nothing closed)",
        "after_close": "after `forkhooks.close()` (what a gunicorn worker meets: `when_ready` closed it)",
    }
    for phase, label in phases.items():
        for how in ("logged", "silent"):
            us = [ns / 1000 for ns in fork[phase][how]]
            out.append(f"| {label} | {how} | {_median(us):.0f} | {_p99(us):.0f} | {max(us):.0f} |")
    out += [
        "",
        "## Fork to first response",
        "",
        f"gunicorn with **1** worker; the worker is killed with SIGKILL {s.kills} times per mode and per row:",
        "",
        "- *kill → first 200*: `/echo` sent right after the kill waits in the listen backlog (the master owns the",
        "  socket) until the replacement answers it: master notices (SIGCHLD) + fork + `post_fork` + worker init +",
        "  `post_worker_init` (warm-up) + the request. This is what a client sees when a worker is replaced.",
        "- *first request on a booted worker*: kill, wait for the new pid, 1 s for it to boot, then time one",
        "  `/echo`: with warm-up its pool is already open; without, this request opens it.",
        "- *steady*: the request right after that one.",
        "",
        "One worker, so the first answer can only come from the new worker (checked: the answer's pid is not the",
        "killed one's). Killing a worker is a better measure than timing gunicorn's start: it leaves out the",
        "master's own start-up and app import (done once, with `--preload`) and is exactly what happens on",
        "`max_requests`, a timeout or a crash.",
        "",
        "| server | kill → first 200, median ms | max ms | first request on a booted worker, median ms "
        "| steady request, median ms |",
        "|---|---:|---:|---:|---:|",
    ]
    for label, r in spawn:
        out.append(
            f"| {label} | {_median(r['kill_to_first_ms']):.1f} | {max(r['kill_to_first_ms']):.1f} | "
            f"{_median(r['first_request_ms']):.1f} | {_median(r['steady_ms']):.1f} |"
        )
    discard_us = _median([ns / 1000 for ns in fork["after_close"]["logged"]])
    discard_p99 = _p99([ns / 1000 for ns in fork["after_close"]["logged"]])
    worst_us = _median([ns / 1000 for ns in fork["open_pool"]["logged"]])
    targets = [
        (
            "preload + forkhooks ≥ 1.0× lazy in throughput",
            f"{rps[base] / rps['lazy']:.2f}× (medians); best rounds {best[base] / best['lazy']:.2f}×",
            rps[base] >= rps["lazy"],
        ),
        (
            "… with less total worker memory",
            f"{mem[base]:.1f} vs {mem['lazy']:.1f} MiB ({mem[base] / mem['lazy']:.2f}×)",
            mem[base] < mem["lazy"],
        ),
        (
            "≥ 4× connect-per-request",
            f"{rps[base] / rps['per-request']:.2f}× (medians); best rounds {best[base] / best['per-request']:.2f}×",
            rps[base] >= 4 * rps["per-request"],
        ),
        (
            "post_fork under 1 ms",
            f"median {discard_us:.0f} µs, p99 {discard_p99:.0f} µs (worst case, open pool: median {worst_us:.0f} µs)"
            + ("" if discard_p99 < 1000 else "; median only, the p99 is not"),
            discard_us < 1000,
        ),
    ]
    out += [
        "",
        "## Targets",
        "",
        "| target | measured | met |",
        "|---|---|---|",
        *[f"| {t} | {m} | {'yes' if ok else '**no**'} |" for t, m, ok in targets],
        "",
        "## Commands",
        "",
        "Each configuration is started from `examples/` with these arguments (`$PORT` a free port), the workers'",
        "PIDs found through `/proc/*/stat`, and the whole process group stopped after its round:",
        "",
        *commands(s),
        "",
        "The `getpid` backend is `bench/getpid_backend/base.py` (selected with `FORKHOOKS_EXAMPLE_ENGINE`): Django's",
        "postgresql backend whose `pool` property compares `os.getpid()` with the pid its pools were built in on",
        "every access and, after a fork, forgets the inherited pools and builds new ones. It needs no hook, but it",
        "pays a `getpid()` syscall on every access, leaves the master holding its start-up connection and pool",
        "(with their threads) for its lifetime, and each worker still inherits — and merely stops using — them.",
        "",
    ]
    return "\n".join(out)


def mysql_skipped(reason: str) -> str:
    """The MySQL section of a run that did not measure it."""
    return "\n".join(
        [
            MYSQL_START,
            "## MySQL / MariaDB",
            "",
            f"Skipped in this run: {reason}. `python bench/run.py --only mysql` measures this section alone and",
            "keeps the rest of this file; it needs Debian's `mariadbd` (it starts a private one) or a server in",
            "`--mysql-dsn` / `FORKHOOKS_TEST_MYSQL_DSN`.",
            MYSQL_END,
            "",
        ]
    )


def mysql_section(
    s: Settings, argv: list[str], dsn: str, where: str, runs: dict[str, list[Run]], elapsed: float
) -> str:
    """The MySQL section: forkhooks against lazy loading (and the broken preload) on MariaDB."""
    import django
    import gunicorn

    def med(key: str, value: Callable[[Run], float]) -> float:
        return _median([value(r) for r in runs[key]])

    cols: dict[str, Callable[[Run], float]] = {
        "rps": lambda r: r.load.rps,
        "p50": lambda r: r.load.p50_ms,
        "p99": lambda r: r.load.p99_ms,
        "workers": lambda r: r.workers_pss_kib / 1024,
        "master": lambda r: r.master_pss_kib / 1024,
        "sessions": lambda r: r.backends,
    }
    m = {c.key: {name: med(c.key, f) for name, f in cols.items()} for c in MYSQL_CONFIGS}
    load_avg = " / ".join(f"{x:.1f}" for x in os.getloadavg()) + " (1/5/15 min) at the end"
    out = [
        MYSQL_START,
        "## MySQL / MariaDB",
        "",
        "Written by `bench/run.py` (this section alone, keeping the rest of the file: `--only mysql`):",
        "",
        f"```sh\n{shlex.join(['python', 'bench/run.py', *argv])}\n```",
        "",
        f"{time.strftime('%Y-%m-%d %H:%M %Z')}, {elapsed / 60:.1f} min, load average {load_avg}. "
        "The MySQL tests' project (`tests/project/mysqlsite`): Django's MySQL backend on mysqlclient with "
        "`CONN_MAX_AGE=None` (one persistent connection per process, as MySQL sites usually run; Django has no "
        "pool for MySQL), and a start-up query in its WSGI module, so a preloading master holds an open session "
        "when it forks. `GET /echo?tag=<unique>`: one `SELECT %s, CONNECTION_ID()` per request, and every answer "
        "checked: its row must carry the request's own tag (`bench/wrk_check.lua`, or the fallback load "
        f"generator). gunicorn `sync` workers, {s.workers} of them; {s.connections} concurrent connections; "
        f"{s.rounds} interleaved round(s), each on a fresh gunicorn, {s.warmup:g} s warm-up then {s.duration:g} s "
        "measured; medians. The load script differs from the PostgreSQL table's (a unique URL and a check per "
        "request), so compare rows within this table only.",
        "",
        f"- Python {platform.python_version()}, Django {django.__version__}, gunicorn {gunicorn.__version__}, "
        f"{'wrk' if load.tool() == 'wrk' else 'forkhooks/loadgen.py'}",
        *mysql.versions(dsn, where),
        *machine(),
        "",
        "| configuration | what | req/s (median) | req/s per round | p50 ms | p99 ms | workers' PSS, total MiB "
        "| master PSS MiB | server sessions | errors | wrong rows |",
        "|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for c in MYSQL_CONFIGS:
        rs, v = runs[c.key], m[c.key]
        per_round = " / ".join(f"{r.load.rps:.0f}" for r in rs)
        wrong, answered = sum(r.load.wrong for r in rs), sum(r.load.requests for r in rs)
        wrong_cell = f"**{wrong}** of {answered} ({100 * wrong / answered:.0f} %)" if wrong else "0"
        out.append(
            f"| `{c.key}` | {c.what} | {v['rps']:.0f} | {per_round} | {v['p50']:.1f} | {v['p99']:.1f} | "
            f"{v['workers']:.1f} | {v['master']:.1f} | {v['sessions']:g} | {sum(r.load.failed for r in rs)} | "
            f"{wrong_cell} |"
        )
    fk, lazy = m["mysql-forkhooks"], m["mysql-lazy"]

    def ratio(name: str) -> str:
        return f"{fk[name] / lazy[name]:.2f}" if lazy[name] else "–"

    # Noise on a shared machine only ever lowers throughput: the best rounds' ratio is shown too.
    best = f"{max(r.load.rps for r in runs['mysql-forkhooks']) / max(r.load.rps for r in runs['mysql-lazy']):.2f}"
    out += [
        f"| **forkhooks ÷ lazy** | ratio of the medians | {ratio('rps')} | best rounds: {best} | {ratio('p50')} | "
        f"{ratio('p99')} | "
        f"{ratio('workers')} | {ratio('master')} | {ratio('sessions')} | | |",
        "",
        "*Workers' PSS*: the sum of `Pss` (`/proc/<pid>/smaps_rollup`) over the workers after the measured run; "
        "*master PSS* apart. *Server sessions*: client sessions in `information_schema.processlist` right after "
        "the measured run (each round starts once the previous round's are gone), the observer's left out. "
        "*Errors*: failed requests (connect, read, timeout, non-2xx); *wrong rows*: 200 answers carrying another "
        "request's row. req/s counts every answer, wrong ones included.",
        "",
        "`mysql-preload` is not an alternative, and its req/s is no result: without forkhooks every worker "
        "inherits the master's start-up session (one socket, one server thread) and reads whatever result comes "
        "back next on it, often another worker's. It is measured only to show what `--preload` does to a MySQL "
        "site without forkhooks; the users' way out of it is lazy loading, the `mysql-lazy` row.",
        "",
        "```sh",
        "cd examples && export FORKHOOKS_MYSQL_DSN=<mysql://dsn> PYTHONPATH=.:..",
        *config_commands(MYSQL_CONFIGS, s, check=True),
        "```",
        MYSQL_END,
        "",
    ]
    return "\n".join(out)


def mysql_round(config: Config, dsn: str, s: Settings) -> Run:
    """One MySQL round: every answer's row checked, the server's sessions counted after load."""
    mysql.wait_idle(dsn)
    return throughput_round(config, dsn, s, lambda: mysql.sessions(dsn), check=True, env={"FORKHOOKS_MYSQL_DSN": dsn})


def main(argv: list[str] | None = None) -> int:
    """Run every measurement and write the markdown report."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, help="measured seconds per configuration and round (default 10)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 1 round, 1 s, few forks and kills")
    parser.add_argument("--rounds", type=int, help="interleaved rounds (default 3, --quick 1)")
    parser.add_argument("--dsn", help="PostgreSQL to use (else FORKHOOKS_DSN, else an embedded one)")
    parser.add_argument(
        "--mysql-dsn",
        help="MySQL/MariaDB (mysql:// URL) to use (else FORKHOOKS_TEST_MYSQL_DSN, else a private mariadbd)",
    )
    parser.add_argument("--no-mysql", action="store_true", help="skip the MySQL section (the file says so)")
    parser.add_argument(
        "--only", choices=["mysql"], help="measure only this section and keep the rest of --output as it is"
    )
    parser.add_argument("--output", type=Path, default=ROOT / "docs" / "benchmarks.md")
    args = parser.parse_args(argv)
    if args.only == "mysql" and args.no_mysql:
        parser.error("--only mysql and --no-mysql exclude each other")
    s = (
        Settings(duration=1, warmup=1, rounds=1, forks=20, kills=2)
        if args.quick
        else Settings(duration=10, warmup=3, rounds=3, forks=200, kills=10)
    )
    s.duration = args.duration or s.duration
    s.rounds = args.rounds or s.rounds
    given = sys.argv[1:] if argv is None else argv
    postgres = args.only is None

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGHUP, _stop)
    started = time.monotonic()
    runs: dict[str, list[Run]] = {}
    fork: dict[str, Any] = {}
    spawn: list[tuple[str, dict[str, list[float]]]] = []
    text = skipped = ""
    with ExitStack() as stack:
        dsn = args.dsn or os.environ.get("FORKHOOKS_DSN", "")
        if postgres and not dsn:
            from forkhooks.demo.embedded import EmbeddedPostgres

            embedded = EmbeddedPostgres()
            stack.callback(embedded.stop)
            dsn = embedded.dsn
        mysql_dsn = None if args.no_mysql else stack.enter_context(mysql.available(args.mysql_dsn))
        if args.no_mysql:
            skipped = "`--no-mysql`"
        elif mysql_dsn is None:
            skipped = "no MariaDB (no `mariadbd` binary, no `--mysql-dsn` / `FORKHOOKS_TEST_MYSQL_DSN`)"
            print(f"bench: MySQL section skipped: {skipped}", flush=True)
            if args.only == "mysql":
                raise SystemExit("bench: --only mysql, but no MariaDB: install mariadb-server or pass --mysql-dsn")
        print(f"bench: load generator {load.tool()}; {s}", flush=True)
        rounds: list[tuple[Config, Callable[[Config], Run]]] = []
        if postgres:
            rounds += [(c, lambda c: throughput_round(c, dsn, s)) for c in CONFIGS]
        if (my := mysql_dsn) is not None:
            rounds += [(c, lambda c: mysql_round(c, my, s)) for c in MYSQL_CONFIGS]
        for i in range(s.rounds):
            for c, measure in rounds:
                run = measure(c)
                runs.setdefault(c.key, []).append(run)
                print(
                    f"bench: round {i + 1} {c.key:<17} {run.load.rps:8.0f} req/s  p99 {run.load.p99_ms:6.1f} ms  "
                    f"workers PSS {run.workers_pss_kib / 1024:6.1f} MiB  errors {run.load.errors}"
                    + (f" (wrong rows {run.load.wrong})" if run.load.wrong else ""),
                    flush=True,
                )
        if postgres:
            fork = fork_cost(dsn, s.forks)
            print("bench: post_fork cost measured", flush=True)
            for label, config, env in RESPAWN:
                spawn.append((label, respawn(config, env, dsn, s.kills)))
                print(f"bench: respawn measured: {label}", flush=True)
            text = report(s, dsn, given, runs, fork, spawn, time.monotonic() - started)
        if mysql_dsn is None:
            section = mysql_skipped(skipped)
        else:
            where = (
                "`--mysql-dsn` / `FORKHOOKS_TEST_MYSQL_DSN`"
                if args.mysql_dsn or os.environ.get("FORKHOOKS_TEST_MYSQL_DSN")
                else "private mariadbd, Unix socket"
            )
            section = mysql_section(s, given, mysql_dsn, where, runs, time.monotonic() - started)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    old = args.output.read_text() if args.output.exists() else ""
    if postgres:
        text = text.rstrip("\n") + "\n\n" + section
        # The Celery section belongs to bench/celery_tasks.py: keep it across a rewrite.
        if (kept := old.find(CELERY_START)) >= 0:
            text = text.rstrip("\n") + "\n\n" + old[kept:]
    else:
        # Only the MySQL section was measured: everything else in the file stays as it was.
        text = regions.replace(old, MYSQL_START, MYSQL_END, section, before=CELERY_START)
    args.output.write_text(text)
    # The raw numbers, beside the report but not in docs/ unless asked: one file per run is enough.
    raw = {k: [asdict(r) | {"rps": r.load.rps} for r in v] for k, v in runs.items()}
    raw_path = LOGS / f"forkhooks-bench-{os.getpid()}.json"
    raw_path.write_text(json.dumps({"throughput": raw, "fork": fork, "respawn": spawn}, indent=1))
    print(f"bench: raw numbers in {raw_path}", flush=True)
    print(f"bench: wrote {args.output}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
