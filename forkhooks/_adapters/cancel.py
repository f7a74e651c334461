"""Cancel, from a supervising process, the queries a child it is about to kill is running.

A killed client does not stop its query: the server runs it to the end,
holding its locks and a connection slot. A supervisor that kills a child
mid-query (billiard's hard time limit, RQ's cold shutdown) can cancel those
queries first: each child names its connections ``<prefix>:<role>:<pid>``
(FORKHOOKS_APPLICATION_NAME, on by default), so the supervisor finds them in
pg_stat_activity over one short connection of its own, closed at once.
"""

from __future__ import annotations

from .._core import djangodb, settings

__all__ = ["cancel_queries_of"]


def cancel_queries_of(pid: int, role: str) -> int:
    """Cancel the running queries of process `pid` (named with `role`) on each PostgreSQL alias; how many."""
    suffix = f":{role}:{pid}"
    handler = djangodb.handler()
    if handler is None:
        return 0
    cancelled = 0
    servers: set[tuple[object, ...]] = set()
    for alias, db in djangodb.database_settings().items():
        if "postgresql" not in str(db.get("ENGINE", "")):
            continue
        server = (db.get("HOST"), db.get("PORT"), db.get("NAME"))
        if server in servers:  # two aliases on one database: one look is enough
            continue
        servers.add(server)
        wrapper = handler[alias]
        params = wrapper.get_connection_params()
        # The supervisor's own loop waits for this: a server that does not answer must not hang it.
        params.setdefault("connect_timeout", max(1, int(settings.close_timeout())))
        conn = wrapper.Database.connect(**params)
        try:
            conn.autocommit = True
            cur = conn.cursor()
            cur.execute(
                "SELECT count(*) FILTER (WHERE pg_cancel_backend(pid)) FROM pg_stat_activity"
                " WHERE state = 'active' AND right(application_name, %s) = %s AND pid <> pg_backend_pid()",
                [len(suffix), suffix],
            )
            cancelled += int(cur.fetchone()[0])
        finally:
            conn.close()
    return cancelled
