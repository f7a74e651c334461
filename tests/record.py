"""Collect measured counts so the run ends with a table (and the notes quote real numbers)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from forkhooks.demo.loadgen import Results

RESULTS = Path(os.environ.get("FORKHOOKS_RESULTS", Path(__file__).resolve().parent.parent / ".results"))


def record(suite: str, case: str, results: Results, **extra: Any) -> None:
    """Append one run's counts to .results/measured.jsonl."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    row = {
        "suite": suite,
        "case": case,
        "requests": results.requests,
        "failed": results.failed,
        "wrong": results.wrong,
        "workers": len(results.pids),
        "p50_ms": round(results.percentile(50), 1),
        "p99_ms": round(results.percentile(99), 1),
        **extra,
    }
    with open(RESULTS / "measured.jsonl", "a") as f:
        f.write(json.dumps(row) + "\n")


def table() -> list[str]:
    """The recorded rows as aligned text lines."""
    path = RESULTS / "measured.jsonl"
    if not path.exists():
        return []
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    keys = ["suite", "case", "requests", "failed", "wrong", "workers", "p50_ms", "p99_ms"]
    extra = sorted({k for r in rows for k in r} - set(keys))
    keys += extra
    widths = {k: max(len(k), *(len(str(r.get(k, ""))) for r in rows)) for k in keys}
    lines = ["  ".join(k.ljust(widths[k]) for k in keys)]
    lines += ["  ".join(str(r.get(k, "")).ljust(widths[k]) for k in keys) for r in rows]
    return lines
