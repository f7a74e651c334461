"""Oracle without a server: discard never lets python-oracledb's closing code run in a child.

Django's oracle backend builds a real oracledb ConnectionPool (thin mode) that connects to nothing; a
child forked after it exits normally (tests/project/oracle_discard.py). oracledb gives no descriptor to
make inert, and its finalizers close: ConnectionPool.__del__ closes every pooled connection (a logoff on
each socket the parent still uses). What a server would show is not measured here.
"""

from __future__ import annotations

import json
import subprocess

import pytest

from .harness import PYTHON, ROOT, child_env

pytest.importorskip("oracledb")

pytestmark = pytest.mark.fork


def probe(*args: str) -> dict:
    """Run the probe; its JSON line."""
    done = subprocess.run(
        [PYTHON, "-m", "tests.project.oracle_discard", *args],
        cwd=ROOT,
        env=child_env(""),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_discard_calls_no_close_and_the_child_never_finalizes_the_pool() -> None:
    """With forkhooks.django: the child drops the pool, calls neither close() nor __del__, not even at its exit."""
    out = probe("with")
    assert out["pool"] == "oracledb.pool.ConnectionPool" and out["thin"], out
    assert out["child"] == ["pools left 0"], out


@pytest.mark.parametrize("args", [("without",), ("with", "--undo-keep")], ids=["without", "keep-undone"])
def test_control_the_child_finalizes_the_inherited_pool(args: tuple[str, ...]) -> None:
    """Without forkhooks, or with the reference that keeps discarded objects released: __del__ runs in the child."""
    out = probe(*args)
    assert "ConnectionPool.__del__" in out["child"], out
