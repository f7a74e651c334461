"""close() on top of a running event loop (uvicorn-worker closes in its stop signal's handler, over its loop).

Django refuses a sync call there (SynchronousOnlyOperation): a persistent connection (CONN_MAX_AGE) would be
dropped at exit without a goodbye. The end-to-end proof is tests/test_mysql_workers.py's uvicorn cases.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from .harness import run_python

CLOSE_IN_LOOP = """
import asyncio, contextlib, os, sys
import django
from django.conf import settings

settings.configure(DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": sys.argv[1],
                                          "CONN_MAX_AGE": None}})
django.setup()
from django.db import connections
import forkhooks
from forkhooks._core import djangodb, steps

djangodb.watch()  # as after a worker's discard: close() finds every wrapper that connected since
wrapper = connections["default"]
wrapper.ensure_connection()
if sys.argv[2] == "undo":  # the fix undone, for the control
    steps._sync_calls_allowed = contextlib.nullcontext

async def main():
    report = forkhooks.close(who="worker")
    print(report.connections, report.failures, wrapper.connection is None, "DJANGO_ALLOW_ASYNC_UNSAFE" in os.environ)

asyncio.run(main())
"""


@pytest.mark.parametrize(("case", "expected"), [("fix", "1 0 True False"), ("undo", "0 1 False False")])
def test_close_on_top_of_a_running_loop(case: str, expected: str, tmp_path: Path) -> None:
    """The connection is closed and the switch is put back; control (fix undone): Django refuses, it stays open."""
    code = CLOSE_IN_LOOP.replace("sys.argv[1]", repr(str(tmp_path / "db.sqlite3"))).replace("sys.argv[2]", repr(case))
    done = run_python(code)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == expected, done.stderr[-3000:]
    if case == "undo":
        assert "SynchronousOnlyOperation" in done.stderr
