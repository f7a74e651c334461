"""Fixed-duration load: wrk when installed, forkhooks' asyncio load generator otherwise."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from forkhooks.demo import loadgen

LUA = Path(__file__).resolve().parent / "wrk_report.lua"
# Checked runs: a unique tag per request, and every answer's row compared with its request's tag.
CHECK_LUA = Path(__file__).resolve().parent / "wrk_check.lua"
PATH = "/echo?tag=bench"  # a fixed URL: every request runs the same one query


@dataclass
class Load:
    """What one fixed-duration run measured."""

    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    errors: int  # connect/read/write/timeout errors, non-2xx answers, and the wrong rows below
    wrong: int = 0  # 200 answers carrying another request's row: counted in checked runs only

    @property
    def failed(self) -> int:
        """Errors other than wrong rows."""
        return self.errors - self.wrong

    @property
    def rps(self) -> float:
        """Requests per second."""
        return self.requests / self.seconds if self.seconds else 0.0


def tool() -> str:
    """'wrk' if it is on PATH, else 'loadgen' (forkhooks/loadgen.py)."""
    return "wrk" if shutil.which("wrk") else "loadgen"


def wrk_argv(target: str, seconds: float, connections: int, *, check: bool = False) -> list[str]:
    """The wrk command line for one run; `check`: unique tags, each answer's row checked."""
    return [
        "wrk",
        "-t1",  # one thread is plenty for 4 sync workers and leaves the second core to the server
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        "--timeout",
        "10s",
        "-s",
        str(CHECK_LUA if check else LUA),
        f"http://{target}{PATH}",
    ]


def run(target: str, seconds: float, *, connections: int = 8, check: bool = False) -> Load:
    """Load `target` ("host:port") for `seconds` and return throughput and latency.

    `check`: count wrong rows too (the fallback always checks: it sends a unique tag per request).
    """
    if tool() == "wrk":
        return _wrk(target, seconds, connections, check)
    return _fallback(target, seconds, connections)


def _wrk(target: str, seconds: float, connections: int, check: bool) -> Load:
    done = subprocess.run(
        wrk_argv(target, seconds, connections, check=check),
        capture_output=True,
        text=True,
        timeout=seconds + 60,
        check=True,
    )
    line = next((x for x in done.stdout.splitlines() if x.startswith("BENCHJSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk printed no report:\n{done.stdout}\n{done.stderr}")
    r = json.loads(line.removeprefix("BENCHJSON "))
    wrong = int(r.get("wrong", 0))
    errors = sum(r[k] for k in ("connect", "read", "write", "timeout", "status")) + wrong
    return Load(r["requests"], r["duration_us"] / 1e6, r["p50_us"] / 1000, r["p99_us"] / 1000, errors, wrong)


def _fallback(target: str, seconds: float, connections: int) -> Load:
    # _loadgen runs a number of requests, not a duration: size the run from a
    # short probe, then report the time it really took.
    started = time.perf_counter()
    probe = loadgen.run(target, 100, concurrency=connections, timeout=10)
    # Answers, wrong rows included (as wrk counts them): a run of wrong rows is sized like any other.
    probe_rate = (probe.ok + probe.wrong) / max(1e-3, time.perf_counter() - started)
    started = time.perf_counter()
    results = loadgen.run(target, max(100, int(probe_rate * seconds)), concurrency=connections, timeout=10)
    elapsed = time.perf_counter() - started
    errors = results.failed + results.wrong
    answered = results.ok + results.wrong
    return Load(answered, elapsed, results.percentile(50), results.percentile(99), errors, results.wrong)
