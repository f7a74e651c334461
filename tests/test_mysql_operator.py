"""Operator tools on MySQL/MariaDB: the connection budget reads the server's max_connections."""

from __future__ import annotations

import re
import subprocess

import pytest

from .harness import PYTHON, ROOT, child_env

pytestmark = pytest.mark.slow

SETTINGS = "tests.project.mysqlsite.settings"


def check(mysql_dsn: str, *args: str) -> subprocess.CompletedProcess[str]:
    """`python -m forkhooks check ...` on the MySQL site's settings."""
    return subprocess.run(
        [PYTHON, "-m", "forkhooks", "check", *args, "--settings", SETTINGS],
        cwd=ROOT,
        env=child_env(mysql_dsn, FORKHOOKS_MYSQL_DSN=mysql_dsn),
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_budget_over_mysql_max_connections(mysql_dsn: str) -> None:
    """1000 gthread workers x 4 threads = 4000 > the server's max_connections (300 on the test server): exit 1."""
    done = check(mysql_dsn, "--workers", "1000", "--threads", "4")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "1000 workers x 4 (threads, 'default' without pool) = 4000 connections" in done.stdout
    assert re.search(r"server allows (\d+) \(max_connections=\1\): over budget", done.stdout), done.stdout


def test_budget_fits_mysql(mysql_dsn: str) -> None:
    """4 workers x 4 threads = 16 fits."""
    done = check(mysql_dsn, "--workers", "4", "--threads", "4")
    assert done.returncode == 0, done.stdout + done.stderr
    assert ": fits" in done.stdout
