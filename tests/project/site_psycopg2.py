"""The demo site on psycopg2: plain connections (Django pools psycopg 3 only), one per request."""

import sys

# Django's backend prefers psycopg 3 when it is importable; hide it so psycopg2 is used.
sys.modules["psycopg"] = None  # type: ignore[assignment]

from tests.testsite.settings import *  # noqa: E402, F403
from tests.testsite.settings import DATABASES  # noqa: E402

DATABASES["default"]["OPTIONS"].pop("pool", None)
