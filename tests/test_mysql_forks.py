"""Plain os.fork() from a Django process on MySQL/MariaDB, and Django's at-fork fix (PR #20803) beside forkhooks."""

from __future__ import annotations

import json
import subprocess
from typing import Any

import pytest

from .harness import PYTHON, ROOT, child_env

pytestmark = [pytest.mark.slow, pytest.mark.fork]

FORKS = 50


def forks(mysql_dsn: str, driver: str, n: int, *flags: str) -> dict[str, Any]:
    """Run tests/project/mysqlforks.py; its counts."""
    env = child_env(mysql_dsn, FORKHOOKS_MYSQL_DSN=mysql_dsn, FORKHOOKS_MYSQL_DRIVER=driver)
    env.pop("DJANGO_SETTINGS_MODULE", None)
    done = subprocess.run(
        [PYTHON, "-m", "tests.project.mysqlforks", "--n", str(n), *flags],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    out: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return out


@pytest.mark.parametrize(("driver", "n"), [("mysqlclient", FORKS), ("pymysql", 20)])
def test_children_get_their_own_session_and_the_parent_keeps_its(mysql_dsn: str, driver: str, n: int) -> None:
    """With forkhooks.install(): every child on a session of its own, the parent's survives every child's exit."""
    out = forks(mysql_dsn, driver, n, "--forkhooks")
    assert (out["own"], out["shared"], out["wrong"], out["child_failed"]) == (n, 0, 0, 0), out
    assert (out["parent_lost"], out["parent_kept"]) == (0, 1), out


def test_control_children_share_and_kill_the_parents_session(mysql_dsn: str) -> None:
    """Control without forkhooks (mysqlclient): a child answers on the parent's session, and its exit kills it."""
    out = forks(mysql_dsn, "mysqlclient", 10)
    assert out["shared"] + out["wrong"] > 0, out
    assert out["parent_lost"] > 0 and out["parent_kept"] == 0, out


def test_django_pr_callback_before_forkhooks_keeps_the_parents_session(mysql_dsn: str) -> None:
    """Django's at-fork callback drops the inherited wrappers first; forkhooks held them: no COM_QUIT is sent."""
    out = forks(mysql_dsn, "mysqlclient", 20, "--django-pr", "--forkhooks")
    assert (out["own"], out["child_failed"]) == (20, 0), out
    assert (out["parent_lost"], out["parent_kept"]) == (0, 1), out


def test_control_django_pr_callback_alone_kills_the_parents_session(mysql_dsn: str) -> None:
    """Control: the same callback without forkhooks frees mysqlclient's connection in the child, which quits it."""
    out = forks(mysql_dsn, "mysqlclient", 5, "--django-pr")
    assert out["own"] == 5, out  # the children themselves are fine: the wrappers were dropped
    assert out["parent_lost"] > 0 and out["parent_kept"] == 0, out
