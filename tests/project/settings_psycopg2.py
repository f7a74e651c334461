"""As settings, on psycopg2: its finalizer sends Terminate, so a freed inherited connection hurts the parent."""

import sys

# Django's backend prefers psycopg 3 when it is importable; hide it so psycopg2 is used.
sys.modules["psycopg"] = None  # type: ignore[assignment]

from .settings import *  # noqa: E402, F403
