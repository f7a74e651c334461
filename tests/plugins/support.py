"""Reporting: the measured table at the end of a run, and one support-matrix line per run in support.jsonl.

scripts/support-table reads support.jsonl; no test writes a tracked file.
"""

from __future__ import annotations

import json
import os
import platform
import time
from importlib import metadata
from typing import Any

import pytest


def pytest_sessionstart(session: pytest.Session) -> None:
    """Start the measured table afresh."""
    from ..record import RESULTS

    (RESULTS / "measured.jsonl").unlink(missing_ok=True)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Print what the tests measured (.results/measured.jsonl) as a table."""
    from ..record import table

    lines = table()
    if lines:
        terminalreporter.section("forkhooks: measured")
        for line in lines:
            terminalreporter.write_line(line)


# --- Supported versions: one JSON line per run in support.jsonl, read by scripts/support-table. ---
SUPPORT_DISTS = (
    "django",
    "gunicorn",
    "psycopg",
    "psycopg-pool",
    "psycopg2",
    "uvicorn-worker",
    "pyuwsgi",
    "gevent",
    "celery",
    "rq",
    "huey",
    "django-q2",
    "django-tasks-scheduler",
    "django-celery-beat",
    "wagtail",
    "mysqlclient",
    "pymysql",
    "oracledb",
)
_SUPPORT: dict[str, Any] = {"started": time.time(), "postgresql": None}


def pytest_runtest_call(item: pytest.Item) -> None:
    """Note the PostgreSQL server's version the first time a test uses the `dsn` fixture."""
    dsn = getattr(item, "funcargs", {}).get("dsn")
    if dsn and _SUPPORT["postgresql"] is None:
        import psycopg

        try:  # as an observer: tests do not count it among the app's backends
            with psycopg.connect(dsn, connect_timeout=5, application_name="forkhooks-observer") as conn:
                _SUPPORT["postgresql"] = conn.execute("SHOW server_version").fetchall()[0][0].split()[0]
        except psycopg.Error:
            _SUPPORT["postgresql"] = "?"


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Append what ran (versions, selection, counts, skip reasons) to support.jsonl."""
    from ..record import RESULTS

    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is None or session.config.option.collectonly:
        return
    if session.config.option.markexpr == "unit":  # the unit tier alone starts no server: it says nothing on support
        return
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for dist in SUPPORT_DISTS:
        versions[dist] = None
        for name in (dist, f"{dist}-binary"):  # psycopg2 is usually psycopg2-binary
            try:
                versions[dist] = metadata.version(name)
                break
            except metadata.PackageNotFoundError:
                pass
    versions["postgresql"] = _SUPPORT["postgresql"]
    counts = {k: len(reporter.stats.get(k, [])) for k in ("passed", "failed", "error", "skipped", "deselected")}
    reasons: dict[str, int] = {}
    for report in reporter.stats.get("skipped", []):
        reason = str(report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr)
        reason = reason.removeprefix("Skipped: ")
        reasons[reason] = reasons.get(reason, 0) + 1
    row = {
        "session": os.environ.get("NOX_CURRENT_SESSION"),
        "finished": time.strftime("%Y-%m-%d %H:%M:%S"),
        "seconds": round(time.time() - _SUPPORT["started"]),
        "exitstatus": int(exitstatus),
        "k": session.config.option.keyword or None,
        "m": session.config.option.markexpr or None,
        "args": list(session.config.invocation_params.args),
        "versions": versions,
        **counts,
        "skip_reasons": reasons,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    with open(RESULTS / "support.jsonl", "a") as f:
        f.write(json.dumps(row) + "\n")
