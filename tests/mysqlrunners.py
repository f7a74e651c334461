"""Shared by the MySQL job-runner tests (Huey, django-q2): the project's environment and its commands."""

from __future__ import annotations

import secrets
import subprocess
from pathlib import Path

from .harness import PYTHON, ROOT, child_env

SETTINGS = "tests.project.settings_mysqlrunners"


def runner_env(mysql_dsn: str, sock: Path, *, app: bool) -> dict[str, str]:
    """The test's own queue (Huey's keys, django-q2's cluster name), on the test's MariaDB."""
    env = {"DJANGO_SETTINGS_MODULE": SETTINGS, "FORKHOOKS_MYSQL_DSN": mysql_dsn}
    env.update(FORKHOOKS_TEST_QUEUE=f"q{secrets.token_hex(4)}", FORKHOOKS_TEST_REDIS=str(sock))
    return env if app else {**env, "FORKHOOKS_TEST_APP": "0"}


def manage(mysql_dsn: str, env: dict[str, str], *argv: str) -> None:
    """Run `python ARGV` in the project's environment (migrate, enqueue); fail with its output."""
    done = subprocess.run(
        [PYTHON, *argv], cwd=ROOT, env=child_env(mysql_dsn, **env), capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
