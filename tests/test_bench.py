"""Smoke test of the benchmark script: it runs end to end and writes every table; nothing is timed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from .harness import ROOT

ROWS = ["forkhooks", "lazy", "per-request", "getpid", "forkhooks+freeze", "lazy+freeze"]


@pytest.mark.e2e
def test_quick_run_writes_every_table(dsn: str, tmp_path: Path) -> None:
    """`bench/run.py --quick` writes docs with the machine, versions and a row per configuration."""
    out = tmp_path / "benchmarks.md"
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "run.py"), "--quick", "--dsn", dsn, "--output", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    text = out.read_text()
    for heading in ["## Machine", "## Versions", "## Throughput and latency", "## Worker memory", "## Targets"]:
        assert heading in text
    for key in ROWS:
        assert text.count(f"| `{key}` |") == 2, key  # one row in the throughput table, one in the memory table
    assert "| open pool + pooled connection" in text
    assert "| preload + forkhooks, FORKHOOKS_WARM=0 |" in text
    assert "Django " in text and "PostgreSQL " in text
