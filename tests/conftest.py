"""The test harness's pytest plugins: fixtures for real databases and servers, and the run's reports.

Fixtures live in tests/plugins/ and helpers in tests/harness.py, tests/servers.py and tests/jobrunners.py.
"""

from __future__ import annotations

# Re-exported: the import path modules used before the split keeps working.
from .harness import EXAMPLES, PYTHON, ROOT, app_backends, child_env

__all__ = ["EXAMPLES", "PYTHON", "ROOT", "app_backends", "child_env"]

pytest_plugins = ["tests.plugins.databases", "tests.plugins.mysql", "tests.plugins.servers", "tests.plugins.support"]
