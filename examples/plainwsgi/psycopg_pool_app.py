"""A psycopg_pool ConnectionPool opened at import, and a query at import.

gunicorn --preload -w 4 -c python:forkhooks.gunicorn plainwsgi.psycopg_pool_app:application
"""

from __future__ import annotations

from psycopg_pool import ConnectionPool

from plainwsgi.echo import DSN, make_app, track

# track(): in each forked worker the pool reopens with its own threads and connections.
pool = track(ConnectionPool(DSN, min_size=2, max_size=4, open=True, timeout=10))


def query(tag: str) -> tuple[str, int]:
    """One round trip on a pooled connection."""
    with pool.connection() as conn:
        row = conn.execute("SELECT %s::text, pg_backend_pid()", [tag]).fetchone()
    assert row is not None
    return row[0], row[1]


query("startup")
application = make_app(query)
