"""Smoke tests of the benchmark script: it runs end to end and writes every table; nothing is timed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from .harness import ROOT

ROWS = ["forkhooks", "lazy", "per-request", "getpid", "forkhooks+freeze", "lazy+freeze"]
MYSQL_ROWS = ["mysql-forkhooks", "mysql-lazy", "mysql-preload"]
MYSQL_START, MYSQL_END = "<!-- bench/run.py mysql: start -->", "<!-- bench/run.py mysql: end -->"


def bench(*args: str) -> None:
    """Run bench/run.py with `args`; fail with its output unless it exits 0."""
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "run.py"), *args], cwd=ROOT, capture_output=True, text=True, timeout=240
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


def cells(text: str, key: str) -> list[str]:
    """The cells of the table row of configuration `key`."""
    (row,) = [line for line in text.splitlines() if line.startswith(f"| `{key}` |")]
    return [c.strip() for c in row.strip("|").split("|")]


@pytest.mark.e2e
def test_quick_run_writes_every_table(dsn: str, tmp_path: Path) -> None:
    """`bench/run.py --quick` writes docs with the machine, versions and a row per configuration."""
    out = tmp_path / "benchmarks.md"
    bench("--quick", "--dsn", dsn, "--no-mysql", "--output", str(out))
    text = out.read_text()
    for heading in ["## Machine", "## Versions", "## Throughput and latency", "## Worker memory", "## Targets"]:
        assert heading in text
    for key in ROWS:
        assert text.count(f"| `{key}` |") == 2, key  # one row in the throughput table, one in the memory table
    assert "| open pool + pooled connection" in text
    assert "| preload + forkhooks, FORKHOOKS_WARM=0 |" in text
    assert "Django " in text and "PostgreSQL " in text
    # Skipped, and the section says so (rather than vanishing or keeping numbers this run did not measure).
    section = text[text.index(MYSQL_START) : text.index(MYSQL_END)]
    assert "Skipped in this run: `--no-mysql`" in section
    assert not any(f"| `{key}` |" in text for key in MYSQL_ROWS)


@pytest.mark.slow
@pytest.mark.e2e
def test_quick_mysql_section_only(mysql_dsn: str, tmp_path: Path) -> None:
    """`--only mysql` measures the three MySQL rows into its own region, keeping the rest of the file.

    Every answer is checked: forkhooks and lazy loading return no wrong row; preloading without forkhooks
    (the control) returns some, so the check is proven to catch them.
    """
    out = tmp_path / "benchmarks.md"
    before = "# Benchmarks\n\nThe PostgreSQL part, kept.\n"
    celery = "<!-- bench/celery_tasks.py: start -->\n## Celery, kept\n<!-- bench/celery_tasks.py: end -->\n"
    out.write_text(f"{before}\n{MYSQL_START}\n## MySQL / MariaDB\n\nSkipped in this run: x.\n{MYSQL_END}\n\n{celery}")
    bench("--quick", "--only", "mysql", "--mysql-dsn", mysql_dsn, "--output", str(out))
    text = out.read_text()
    assert text.startswith(before) and text.endswith(celery), text
    assert text.count(MYSQL_START) == 1 and "Skipped in this run" not in text
    assert "mysqlclient " in text and "MariaDB" in text
    for key in ("mysql-forkhooks", "mysql-lazy"):
        row = cells(text, key)
        assert row[-1] == "0", row  # wrong rows
        assert row[-3] == "4", row  # server sessions: the 4 workers' own; a forkhooks master holds none
    preload = cells(text, "mysql-preload")
    assert preload[-1].startswith("**") and int(preload[-1].split("**")[1]) > 0, preload
    assert "| **forkhooks ÷ lazy** |" in text
