"""End, from a supervising process, the queries of a child it kills or that died without closing.

A killed client does not stop its query: the server runs it to the end,
holding its locks and a connection slot. Each child names its connections
``<prefix>:<role>:<pid>@<host>`` (FORKHOOKS_APPLICATION_NAME, on by default),
so its supervisor finds them in pg_stat_activity over one short connection of
its own, closed at once:

- `cancel_queries_of` before it kills a child (billiard's hard time limit,
  RQ's cold shutdown): the child is alive, so only its running query is cancelled;
- `end_backends_of` once a child is gone (SIGKILL, the OOM killer, a stop that
  outlasted the graceful timeout): its backends serve no one, they are terminated.

Only a backend that provably belongs to that process is touched: its name
carries this host's token (pids repeat across machines and containers), and
the supervisor's connection reaches the server directly. Through a pooler
(pgbouncer), a server backend keeps the name of whichever client used it
last, so nothing can be proven there: forkhooks acts on nothing and says so once.
"""

from __future__ import annotations

import logging
from typing import Any

from .._core import Log, djangodb
from .._tools import appname

__all__ = ["cancel_queries_of", "end_backends_of"]

_log = logging.getLogger("forkhooks")

# libpq's connect_timeout: the supervisor's own loop waits for this, so a server that does not
# answer must not hang it (libpq counts whole seconds, and treats 1 as 2).
CONNECT_TIMEOUT = 2

_CANCEL = (
    "SELECT count(*) FILTER (WHERE pg_cancel_backend(pid)) FROM pg_stat_activity"
    " WHERE state = 'active' AND right(application_name, %s) = %s AND pid <> pg_backend_pid()"
)
_TERMINATE = (
    "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity"
    " WHERE right(application_name, %s) = %s AND pid <> pg_backend_pid()"
)

# Servers already reported as reached through a pooler: one line per process, not per child.
_pooled_said: set[tuple[object, ...]] = set()


def cancel_queries_of(pid: int, role: str, *, log: Log | None = None) -> int:
    """Cancel the running queries of live process `pid` (named with `role`) on each PostgreSQL server; how many."""
    return _act(_CANCEL, appname.suffix(role, pid), log or _log)


def end_backends_of(pid: int, *, log: Log | None = None) -> int:
    """Terminate every backend of process `pid` of this host, which must be gone; how many.

    Does nothing while `pid` is alive: it may be a new process that got the same pid.
    """
    if appname.alive(pid):
        return 0
    # Any role: a pid names one process of this host, whatever it called itself.
    return _act(_TERMINATE, f":{pid}@{appname.host_token()}", log or _log)


def _act(sql: str, tail: str, log: Log) -> int:
    """Run `sql` (matching names that end with `tail`) once per PostgreSQL server in DATABASES; the total count."""
    handler = djangodb.handler()
    if handler is None:
        return 0
    done = 0
    servers: set[tuple[object, ...]] = set()
    for alias, db in djangodb.database_settings().items():
        wrapper = handler[alias]
        if getattr(wrapper, "vendor", "") != "postgresql":
            continue
        server = (db.get("HOST"), db.get("PORT"), db.get("NAME"))
        if server in servers:  # two aliases on one database: one look is enough
            continue
        servers.add(server)
        params = wrapper.get_connection_params()
        params["connect_timeout"] = CONNECT_TIMEOUT
        conn = wrapper.Database.connect(**params)
        try:
            conn.autocommit = True
            cur = conn.cursor()
            if _through_pooler(conn, cur):
                if server not in _pooled_said:
                    _pooled_said.add(server)
                    log.warning(
                        "forkhooks: database %r is reached through a connection pooler (pgbouncer or the like): "
                        "a server backend there cannot be tied to the process that used it, so forkhooks cancels "
                        "and terminates nothing on it. To end the queries of killed processes, set "
                        "client_connection_check_interval on the server (ALTER ROLE ... SET "
                        "client_connection_check_interval = 500).",
                        alias,
                    )
                continue
            cur.execute(sql, [len(tail), tail])
            done += int(cur.fetchone()[0])
        finally:
            conn.close()
    return done


def _through_pooler(conn: Any, cur: Any) -> bool:
    """True when `conn` does not reach a PostgreSQL backend directly.

    The server tells each client its backend's pid at start-up (BackendKeyData);
    a pooler answers that itself, with a pid of its own making, and then passes
    queries to whichever server backend is free.
    """
    told = int(conn.info.backend_pid)  # psycopg 3 and psycopg2 >= 2.8 alike
    cur.execute("SELECT pg_backend_pid()")
    return told != int(cur.fetchone()[0])
