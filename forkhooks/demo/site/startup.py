"""What many apps do while they load: one query (a feature flag, a cache warm-up)."""

from django.db import connection


def read_feature_flags() -> None:
    """Run the start-up query, leaving the connection (and pool) open as Django does."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
