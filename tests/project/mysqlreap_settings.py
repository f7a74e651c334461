"""The MySQL site's settings, plus the one test-only switch of the MySQL reaping tests' controls.

FORKHOOKS_TEST_MYSQL_REAP=0: the supervisor ends no MySQL session (forkhooks as it was before it
read the registry); everything else stays as it is.
"""

import os

from tests.project.mysqlsite.settings import *  # noqa: F403

ROOT_URLCONF = "tests.project.mysqlreap_urls"

if os.environ.get("FORKHOOKS_TEST_MYSQL_REAP") == "0":
    from forkhooks._adapters import cancel

    cancel._mysql_act = lambda pid, end, log: 0  # type: ignore[assignment]
