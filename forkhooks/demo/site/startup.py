"""What many apps do while they load: one query (a feature flag, a cache warm-up)."""

import os

from django.db import connection


def read_feature_flags() -> None:
    """Run the start-up query, leaving the connection (and pool) open as Django does."""
    if os.environ.get("FORKHOOKS_EXAMPLE_STARTUP_QUERY") == "0":  # an app that loads without a query
        return
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
