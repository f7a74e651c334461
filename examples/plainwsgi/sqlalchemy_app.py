"""An SQLAlchemy Engine (QueuePool, psycopg2 driver) created at import, and a query at import.

gunicorn --preload -w 4 -c python:forkhooks.gunicorn plainwsgi.sqlalchemy_app:application
"""

from __future__ import annotations

from sqlalchemy import create_engine, text

from plainwsgi.echo import DSN, make_app, track

# track(): in each forked worker the engine gets a new pool (dispose(close=False)).
engine = track(create_engine(DSN.replace("postgresql://", "postgresql+psycopg2://", 1), pool_size=2, max_overflow=2))

ECHO = text("SELECT CAST(:tag AS text), pg_backend_pid()")


def query(tag: str) -> tuple[str, int]:
    """One round trip on a pooled connection."""
    with engine.connect() as conn:
        got, backend = conn.execute(ECHO, {"tag": tag}).one()
    return got, backend


query("startup")
application = make_app(query)
