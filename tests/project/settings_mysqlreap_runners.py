"""Huey and django-q2 on MySQL (tests/project/settings_mysqlrunners.py), plus the MySQL reaping tests' control switch.

FORKHOOKS_TEST_MYSQL_REAP=0: the supervisor ends no MySQL session (forkhooks as it was before it
read the registry); everything else stays as it is.
"""

import os

from tests.project.settings_mysqlrunners import *  # noqa: F403

if os.environ.get("FORKHOOKS_TEST_MYSQL_REAP") == "0":
    from forkhooks._adapters import cancel

    cancel._mysql_act = lambda pid, end, log: 0  # type: ignore[assignment]
