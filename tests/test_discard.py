"""discard() in a real forked child, against a real PostgreSQL, both drivers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from .servers import run_json

CHILDREN = 50


def scenario(dsn: str, *args: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run tests/scenario_discard.py in its own interpreter and return its report."""
    report: dict[str, Any] = run_json("tests.scenario_discard", dsn, *args, dsn=dsn, env=env)[0]
    return report


CASES = [
    ("psycopg", "plain"),
    ("psycopg", "pooled"),
    ("psycopg", "atomic"),
    ("psycopg2", "plain"),
    ("psycopg2", "atomic"),
]


@pytest.mark.fork
@pytest.mark.parametrize(("driver", "mode"), CASES, ids=[f"{d}-{m}" for d, m in CASES])
def test_children_get_their_own_connection_and_the_parent_keeps_its_session(dsn: str, driver: str, mode: str) -> None:
    """50 children discard and query; the parent's backend is the same, idle, and got no byte."""
    report = scenario(dsn, "--driver", driver, "--mode", mode, "--children", str(CHILDREN))
    children = report["children"]
    parent = report["parent_backend"]
    assert len(children) == CHILDREN
    assert [c for c in children if "error" in c] == []
    assert all(c["tag_ok"] for c in children)
    assert parent not in {c["backend"] for c in children}, "a child used the parent's session"
    assert report.get("parent_error") is None
    assert report["parent_backend_after"] == parent
    # Nothing reached the parent's backend: its state did not even change, and
    # no reply to anything is waiting on the parent's socket.
    assert report["after"] == report["before"]
    assert report["pending_bytes"] == 0
    if mode == "atomic":
        assert report["before"]["state"] == "idle in transaction"
        assert report["parent_transaction_intact"] is True


@pytest.mark.fork
@pytest.mark.parametrize("driver", ["psycopg", "psycopg2"])
def test_control_closing_in_the_child_kills_the_parents_session(dsn: str, driver: str) -> None:
    """The naive fix, connection.close() in the child, sends Terminate on the parent's socket."""
    report = scenario(dsn, "--driver", driver, "--children", "1", "--child", "close")
    assert report["after"] == {}, "the parent's backend is gone"
    assert "parent_error" in report


@pytest.mark.fork
def test_control_doing_nothing_shares_the_parents_session(dsn: str) -> None:
    """Without discard a child queries over the parent's socket: same backend for both."""
    report = scenario(dsn, "--children", "5", "--child", "nothing")
    assert {c["backend"] for c in report["children"]} == {report["parent_backend"]}


@pytest.mark.fork
def test_sqlite_connections_are_dropped_without_touching_the_file(dsn: str, tmp_path: Path) -> None:
    """An SQLite alias next to PostgreSQL: children discard it, the parent's stays usable."""
    report = scenario(dsn, "--mode", "sqlite", "--children", "5", env={"SCENARIO_SQLITE": str(tmp_path / "db.sqlite3")})
    assert [c for c in report["children"] if "error" in c] == []
    assert report["sqlite_ok"] is True
    assert report["parent_backend_after"] == report["parent_backend"]
