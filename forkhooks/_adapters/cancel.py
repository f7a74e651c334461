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
Reached directly, a backend whose client end this host's kernel shows held by
another process (a pooler the clients use, a subprocess that inherited
PGAPPNAME) is left alone too (forkhooks._tools.clients).

MySQL and MariaDB name no connection, so each process lists its sessions in a
registry file when it connects (forkhooks._core.mysql); the supervisor reads
the child's file and sends ``KILL QUERY`` (live child) or ``KILL`` (gone
child) only for a session the server proves to be that one: the same thread
id and user, over TCP the same client port, on a server that has not
restarted since the session was recorded (thread ids start again at 1).
"""

from __future__ import annotations

import math
from typing import Any

from .._core import Log, djangodb, mysql, procs
from .._core import log as _log
from .._tools import appname, clients

__all__ = ["cancel_queries_of", "end_backends_of"]


# libpq's connect_timeout: the supervisor's own loop waits for this, so a server that does not
# answer must not hang it (libpq counts whole seconds, and treats 1 as 2).
CONNECT_TIMEOUT = 2

_FIND = (
    "SELECT pid, host(client_addr), client_port FROM pg_stat_activity"
    " WHERE right(application_name, %s) = %s AND pid <> pg_backend_pid()"
)
_CANCEL = "pg_cancel_backend"
_TERMINATE = "pg_terminate_backend"
_ACT = "SELECT count(*) FILTER (WHERE {}(p)) FROM unnest(%s::int[]) AS p"

# Servers already reported as reached through a pooler: one line per process, not per child.
_pooled_said: set[tuple[object, ...]] = set()


def cancel_queries_of(pid: int, role: str, *, log: Log | None = None) -> int:
    """Cancel the running queries of live process `pid` (named with `role`) on each PostgreSQL and MySQL server;
    how many."""
    log = log or _log
    done = _mysql_act(pid, False, log)  # first: it never raises, a PostgreSQL server that fails may
    return done + _act(_CANCEL, appname.suffix(role, pid), pid, log)


def end_backends_of(pid: int, *, log: Log | None = None) -> int:
    """Terminate every backend of process `pid` of this host, which must be gone; how many.

    Does nothing while `pid` is alive: it may be a new process that got the same pid.
    """
    if appname.alive(pid):
        return 0
    log = log or _log
    done = _mysql_act(pid, True, log)  # first: it never raises, a PostgreSQL server that fails may
    # Any role: a pid names one process of this host, whatever it called itself.
    return done + _act(_TERMINATE, f":{pid}@{appname.host_token()}", pid, log)


def end_backends_after_death(pid: int, whose: str, log: Log) -> int:
    """end_backends_of() for a child its supervisor saw die without closing, said in one line; never raises."""
    try:
        n = end_backends_of(pid, log=log)
    except Exception:
        log.exception("forkhooks: ending %s %s's backends failed; continuing", whose, pid)
        return 0
    if n:
        log.info("forkhooks: %s %s died without closing: ended %d backend(s)", whose, pid, n)
    return n


def _act(function: str, tail: str, pid: int, log: Log) -> int:
    """Call `function` on the backends of process `pid` (names ending with `tail`) on each PostgreSQL server in
    DATABASES, but those another process is seen to hold; the total count."""
    handler = djangodb.handler()
    # FORKHOOKS_APPLICATION_NAME=0: no PostgreSQL backend carries a process's name to find (MySQL's
    # registry does not depend on names).
    if handler is None or not appname.enabled(log):
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
        params["application_name"] = appname.for_this_process(appname.Role.SUPERVISOR, params.get("application_name"))
        conn = wrapper.Database.connect(**params)
        try:
            conn.autocommit = True
            cur = conn.cursor()
            if clients.through_pooler(conn, cur):
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
            find = _FIND + (" AND state = 'active'" if function == _CANCEL else "")
            cur.execute(find, [len(tail), tail])
            rows = cur.fetchall()
            backends = _proven(conn, rows, pid, log) if rows else []
            if backends:
                cur.execute(_ACT.format(function), [backends])
                done += int(cur.fetchone()[0])
        finally:
            conn.close()
    return done


def _proven(conn: Any, rows: list[Any], pid: int, log: Log) -> list[int]:
    """The backends among `rows` (pid, client address, client port) not shown to be another process's.

    The server is reached directly, yet clients may still come through a pooler (an
    alias of their own, or another application): such a backend keeps the name of its
    last client, and its client end is held by the pooler. So is a subprocess's that
    inherited PGAPPNAME. Where this host's kernel shows who holds the client end, only
    `pid`'s (or, for a gone `pid`, a closed one) is acted on; where it cannot tell (a
    Unix socket of another user's server), the name on a direct connection decides.
    """
    holders = clients.Clients(conn)
    gone = not appname.alive(pid)
    mine = []
    for backend, addr, port in rows:
        held = holders.holder(int(backend), addr, None if port is None else int(port))
        if held.pids and pid not in held.pids:
            via = held.pids[0]
            log.info(
                "forkhooks: backend %s carries the name of process %s but pid %s (%s) holds its connection "
                "(a pooler's, or a subprocess's): left alone",
                backend,
                pid,
                via,
                clients.comm(via),
            )
            continue
        if held.closed and not gone:
            continue  # its client end is closed: not the live process's connection any more
        mine.append(int(backend))
    return mine


# -- MySQL and MariaDB: the child's registry file, each session proven on the server ----------------

_RUNNING = {"Query", "Execute"}  # COMMAND of a session in a statement (not Sleep, not Killed)


def _mysql_aliases() -> list[tuple[str, Any]]:
    handler = djangodb.handler()
    if handler is None:
        return []
    return [(a, handler[a]) for a in djangodb.database_settings() if getattr(handler[a], "vendor", "") == "mysql"]


def _mysql_act(pid: int, end: bool, log: Log) -> int:
    """KILL (end) or KILL QUERY (not end) the sessions process `pid` listed, on each MySQL server in DATABASES, that
    the server proves to be those; the count. Never raises: a failure is logged in one line."""
    try:
        return _mysql_sessions(pid, end, log)
    except Exception as exc:
        log.warning("forkhooks: the MySQL sessions of process %d: %s: %s; continuing", pid, type(exc).__name__, exc)
        return 0


def _mysql_sessions(pid: int, end: bool, log: Log) -> int:
    aliases = _mysql_aliases()
    if not aliases:
        return 0
    registry = mysql.read_registry(pid)
    if registry is None or not registry.entries:
        return 0
    if not end and registry.started is not None and registry.started != procs.start_time(pid):
        return 0  # the file of an earlier process with this pid: the live one has not connected yet
    done = 0
    failed = False
    servers: set[tuple[str, int, str]] = set()
    for alias, wrapper in aliases:
        try:
            params = dict(wrapper.get_connection_params())
            server = mysql.server_of(params)
            if server in servers:
                continue
            servers.add(server)
            entries = [e for e in registry.entries if e.server == server]
            if entries:
                done += _kill_sessions(wrapper.Database, params, entries, pid, end, log)
        except Exception as exc:
            failed = True
            log.warning(
                "forkhooks: %s the MySQL sessions of process %d on %r failed (%s: %s); continuing",
                "ending" if end else "cancelling the queries of",
                pid,
                alias,
                type(exc).__name__,
                exc,
            )
    if end and not failed:  # its sessions are ended: the file is no one's (kept while a server failed)
        mysql.remove_registry(registry)
    return done


def _kill_sessions(
    database: Any, params: dict[str, Any], entries: list[mysql.Entry], pid: int, end: bool, log: Log
) -> int:
    """Over one short connection (bounded timeouts, closed at once): prove each entry's session, KILL it; how many."""
    seconds = max(1, math.ceil(CONNECT_TIMEOUT))
    params.update(connect_timeout=seconds, read_timeout=seconds, write_timeout=seconds)
    conn = database.connect(**params)
    try:
        cur = conn.cursor()
        started_at = mysql.server_started(cur)
        ids = sorted({e.thread_id for e in entries})
        cur.execute(
            "SELECT ID, USER, HOST, COMMAND FROM information_schema.PROCESSLIST WHERE ID IN ("
            + ", ".join(["%s"] * len(ids))
            + ")",
            ids,
        )
        rows = {int(r[0]): mysql.Session(str(r[1]), str(r[2] or ""), str(r[3] or "")) for r in cur.fetchall()}
        held = clients.held_tcp_ends() if end and any(e.client for e in entries) else set()
        done = 0
        for entry in entries:
            why = mysql.unproven(entry, rows.get(entry.thread_id), started_at, held)
            if why:
                if entry.thread_id in rows:  # a session that is gone needs no word
                    log.info(
                        "forkhooks: MySQL session %d listed by process %d %s: left alone", entry.thread_id, pid, why
                    )
                continue
            if not end and rows[entry.thread_id].command not in _RUNNING:
                continue  # idle: no query to cancel (KILL QUERY on an idle session is no-op at best)
            try:
                cur.execute(f"{'KILL' if end else 'KILL QUERY'} {int(entry.thread_id)}")
            except database.Error as exc:  # 1094, unknown thread id: it ended in between
                if exc.args and exc.args[0] == 1094:
                    continue
                raise
            done += 1
        cur.close()
        return done
    finally:
        conn.close()
