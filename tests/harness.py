"""What every test and harness module shares: the tree's paths, the example project's environment, backend counts."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # imported where used: the unit tier (tests/unit) runs without the drivers
    import psycopg

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
PYTHON = sys.executable


def app_backends(observer: psycopg.Connection) -> int:
    """Client backends on the server other than observers'."""
    row = observer.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'"
        " AND application_name <> 'forkhooks-observer'"
    ).fetchone()
    assert row is not None
    return int(row[0])


def child_env(dsn: str, **extra: str) -> dict[str, str]:
    """Environment for a subprocess running the example project."""
    env = dict(os.environ, FORKHOOKS_DSN=dsn, PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = os.pathsep.join([str(EXAMPLES), str(ROOT), env.get("PYTHONPATH", "")])
    env.update(extra)
    return env
