"""The blog post's app: a psycopg2 ThreadedConnectionPool created at import, and a query at import.

gunicorn --preload -w 4 -c python:forkhooks.gunicorn plainwsgi.psycopg2_app:application
"""

from __future__ import annotations

from psycopg2.pool import ThreadedConnectionPool

from plainwsgi.echo import DSN, make_app, track

# track(): in each forked worker the pool starts empty and connects on demand.
pool = track(ThreadedConnectionPool(1, 4, DSN))


def query(tag: str) -> tuple[str, int]:
    """One round trip on a pooled connection."""
    conn = pool.getconn()
    try:
        with conn.cursor() as cursor:
            cursor.execute("SELECT %s::text, pg_backend_pid()", [tag])
            got, backend = cursor.fetchone()
        conn.rollback()  # end the read-only transaction before the connection goes back
        return got, backend
    finally:
        pool.putconn(conn)


query("startup")  # e.g. reading feature flags: the master now holds a connection
application = make_app(query)
