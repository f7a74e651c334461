"""`forkhooks connections`: the server's backends grouped by the process that holds them.

A backend's application_name says which process opened it
(``<prefix>:<role>:<pid>@<host>``), but a name is only a claim: behind a
pooler (pgbouncer) a server backend keeps the name of the last client that
used it, and a subprocess inherits its parent's PGAPPNAME. So a verdict that
calls for action needs proof from this host's kernel of who holds the client
end of the connection:

- ORPHAN (exit 1): the name carries this host's token, its pid is gone, and
  the client end of the connection is proven closed: for a Unix-socket client,
  the backend's socket has no live peer (``ss -x``); for a TCP client, its
  (client_addr, client_port) is no longer an open socket here, the server
  seeing this host as that address (checked on our own connection).
- "via pid N (comm): ... no verdict": the client end is held by another live
  process than the name says, typically pgbouncer holding a server
  connection that kept its last client's name. The backend is grouped under
  that process; nothing is flagged.
- "owner pid gone, unverified: ... no verdict" (exit 0): the pid is gone but
  the client end could not be looked at (not Linux, another user's processes,
  a server on another host seen through address translation).
- Connected through a pooler itself (the backend pid the server announced
  differs from pg_backend_pid()), the tool says so in one line and gives no
  verdict at all (exit 0): connect to the server directly for them.

Exit status (EPILOG): 1 for a proven ORPHAN or a backend held by a master
(its name being its holder's, or the holder unknown), else 0 ("idle in
transaction" and the no-verdict lines are notes); 2 and 3 for usage errors
and an unreachable server.
Proof needs /proc and ``ss`` (iproute2), as root or as the user of both the
clients and the server for Unix sockets.

MySQL/MariaDB (a Django alias with the MySQL backend, --settings): sessions
carry no name, so the owner is the process of this host whose registry file
lists the session (forkhooks._core.mysql). ORPHAN: that process is gone and the
server proves the session is the one it recorded (the same thread id and user,
over TCP the same client port not held by any live process here, on the same
server run), as the supervisor's own check before it ends one. A session no
registry lists is shown without a verdict; no session is called a master's.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from typing import Any

from .._core import mysql as _mysql
from .._core import settings as _settings
from .appname import Owner as Named
from .appname import Role, alive, ours, parse
from .clients import Clients, comm, held_tcp_ends, through_pooler
from .common import error_text, use_settings

_QUERY = """
SELECT pid, application_name, state, host(client_addr),
       extract(epoch FROM now() - coalesce(state_change, backend_start))::float, client_port
FROM pg_stat_activity
WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()
ORDER BY application_name, pid
"""

ORPHAN = "ORPHAN: owner pid gone"
MASTER = "held by a master"
VERDICTS = {ORPHAN, MASTER}  # the flags that exit ALARMING
POOLED = (
    "forkhooks connections: connected through a connection pooler (pgbouncer or the like): a server backend "
    "there keeps the name of the last client that used it, so no backend is called an orphan or a master's; "
    "connect to the server directly (--dsn) for verdicts"
)


@dataclass
class Backend:
    """One server backend and what its application_name says of its owner."""

    pid: int
    application_name: str
    state: str
    client_addr: str | None
    idle_seconds: float
    client_port: int | None = None  # -1: a Unix-socket client

    @property
    def owner(self) -> Named | None:
        """(prefix, role, pid, host) when forkhooks named it."""
        return parse(self.application_name)


@dataclass
class Owner:
    """A process holding backends, with the flags that call for a look."""

    name: str
    backends: list[Backend] = field(default_factory=list)
    flags: list[str] = field(default_factory=list)
    renamed: bool = False  # held by another process than the names say: show each backend's name


def fetch(conn: Any) -> list[Backend]:
    """Every client backend but our own, from pg_stat_activity."""
    cur = conn.cursor()
    cur.execute(_QUERY)
    return [
        Backend(int(r[0]), r[1] or "", r[2] or "", r[3], float(r[4] or 0), None if r[5] is None else int(r[5]))
        for r in cur.fetchall()
    ]


def _flag(owner: Owner, flag: str) -> None:
    if flag not in owner.flags:
        owner.flags.append(flag)


def group(backends: list[Backend], clients: Clients | None = None) -> list[Owner]:
    """Group backends by owner process and flag orphans, idle-in-transaction ones, and masters.

    Without `clients` (connected through a pooler), names are all there is: nothing is flagged as
    an orphan or a master's, since a name there may be a former client's.
    """
    owners: dict[str, Owner] = {}
    for b in backends:
        who = b.owner
        key = f"{who[1]} {who[2]} ({who[0]})" if who else (b.application_name or "(no application_name)")
        held = clients.holder(b.pid, b.client_addr, b.client_port) if clients is not None and ours(who) else None
        if held is not None and held.pids and who is not None and who.pid not in held.pids:
            # Another live process holds it: a pooler's server connection, or a subprocess that
            # inherited PGAPPNAME. The name is not its owner's; the holder is.
            via = held.pids[0]
            owner = owners.setdefault(f"via pid {via} ({comm(via)})", Owner(f"via pid {via} ({comm(via)})"))
            owner.renamed = True
            owner.backends.append(b)
            _flag(owner, "holds backends named after other processes (a pooler?): owner unknown, no verdict")
        else:
            owner = owners.setdefault(key, Owner(key))
            owner.backends.append(b)
            if ours(who) and not alive(who.pid):
                if held is None:
                    _flag(owner, "owner pid gone, unverified: reached through a pooler, no verdict")
                elif held.closed:
                    _flag(owner, ORPHAN)
                elif not held.pids:
                    _flag(owner, f"owner pid gone, unverified: {held.why}; no verdict")
            if who and who.role == Role.MASTER.token and clients is not None:
                _flag(owner, MASTER)
        if b.state.startswith("idle in transaction"):
            _flag(owner, "idle in transaction")
    return list(owners.values())


def render(owners: list[Owner]) -> str:
    """A plain-text report, one block per owner."""
    if not owners:
        return "no client backends"
    lines = []
    for owner in owners:
        flags = f"  [{', '.join(owner.flags)}]" if owner.flags else ""
        lines.append(f"{owner.name}: {len(owner.backends)} backend(s){flags}")
        for b in owner.backends:
            named = f"  last named {b.application_name or '-'}" if owner.renamed else ""
            lines.append(f"    backend {b.pid:>7}  {b.state or '-':<20} idle {b.idle_seconds:8.1f}s{named}")
    return "\n".join(lines)


# `forkhooks connections`: which process holds which of my server's connections?
HELP = "list the server's backends grouped by owner process; flag orphans, idle in transaction, masters"


def add_arguments(parser: Any) -> None:
    """Options of `forkhooks connections`."""
    parser.add_argument(
        "--dsn", help="libpq DSN of the server (else FORKHOOKS_DSN, else Django settings; MySQL: settings only)"
    )
    parser.add_argument("--settings", help="Django settings module to take the server from")
    parser.add_argument("--alias", default="default", help="Django database alias (with --settings)")


def _connect(args: Any) -> Any:
    dsn = args.dsn or _settings.server_dsn()
    if dsn:
        try:
            import psycopg

            return psycopg.connect(dsn, autocommit=True, application_name="forkhooks-connections")
        except ImportError:
            import psycopg2

            conn = psycopg2.connect(dsn, application_name="forkhooks-connections")
            conn.autocommit = True
            return conn
    from django.db import connections

    wrapper = connections[args.alias]
    params = wrapper.get_connection_params()
    params["application_name"] = "forkhooks-connections"
    return wrapper.Database.connect(**params)


# Exit statuses.
CLEAN, ALARMING, USAGE, UNREACHABLE = 0, 1, 2, 3

EPILOG = f"""exit status:
  {CLEAN}  nothing that needs a look (idle in transaction is shown, not counted)
  {ALARMING}  an orphan (owner pid gone on this host and its client end proven closed) or a backend
     held by a master; never through a pooler, which gets one line saying so and no verdict
  {USAGE}  usage error: no server given (--dsn/FORKHOOKS_DSN or --settings/DJANGO_SETTINGS_MODULE),
     or Django settings that cannot be loaded
  {UNREACHABLE}  cannot connect to the server (the line says why)"""


def _django_ready(args: Any) -> str | None:
    """Set Django up from --settings / DJANGO_SETTINGS_MODULE; why not, in one line, when it cannot be."""
    if not use_settings(args.settings):
        return "no server given: pass --dsn (or set FORKHOOKS_DSN) or --settings (or set DJANGO_SETTINGS_MODULE)"
    try:
        import django
        from django.db import connections

        django.setup()
        connections[args.alias]  # an unknown alias is a usage error, not an unreachable server
    except Exception as exc:
        return f"cannot use the Django settings: {error_text(exc)}"
    return None


def run(args: Any) -> int:
    """Print the report; exit 1 for a proven orphan or a master-held backend, never through a pooler (EPILOG)."""
    if not (args.dsn or _settings.server_dsn()):
        problem = _django_ready(args)
        if problem:
            print(f"forkhooks connections: {problem}", file=sys.stderr)
            return USAGE
        from django.db import connections

        if getattr(connections[args.alias], "vendor", "") == "mysql":
            return run_mysql(connections[args.alias])
    try:
        conn = _connect(args)
    except Exception as exc:
        print(f"forkhooks connections: cannot connect: {error_text(exc)}", file=sys.stderr)
        return UNREACHABLE
    try:
        pooled = through_pooler(conn, conn.cursor())
        owners = group(fetch(conn), None if pooled else Clients(conn))
    finally:
        conn.close()
    if pooled:
        print(POOLED)
    print(render(owners))
    return ALARMING if any(VERDICTS & set(o.flags) for o in owners) else CLEAN


# -- MySQL/MariaDB: sessions by the registry files of this host's processes ----------------------------

_MYSQL_QUERY = """
SELECT p.ID, p.USER, p.HOST, p.COMMAND, p.TIME, t.trx_id IS NOT NULL
FROM information_schema.PROCESSLIST p
LEFT JOIN information_schema.INNODB_TRX t ON t.trx_mysql_thread_id = p.ID
WHERE p.ID <> CONNECTION_ID() AND p.COMMAND <> 'Daemon'
ORDER BY p.ID
"""


def _registered(server: tuple[str, int, str]) -> dict[int, tuple[int, Any]]:
    """thread id -> (pid, entry) from this user's registry files, for sessions on `server`."""
    found: dict[int, tuple[int, Any]] = {}
    folder = _mysql.registry_dir()
    try:
        names = [n for n in os.listdir(folder) if n.isdigit()]
    except OSError:
        return found
    for name in names:
        registry = _mysql.read_registry(int(name))
        for entry in registry.entries if registry else []:
            if entry.server == server:
                found[entry.thread_id] = (int(name), entry)
    return found


def group_mysql(
    rows: list[tuple[Any, ...]], registered: dict[int, tuple[int, Any]], server_started: float
) -> list[Owner]:
    """Group PROCESSLIST rows (id, user, host, command, time, in a transaction) by the process that registered them;
    flag the proven orphans."""
    held = held_tcp_ends() if any(e.client for _, e in registered.values()) else set()
    owners: dict[str, Owner] = {}
    for session, user, host, command, seconds, in_trx in rows:
        sid = int(session)
        idle = command == "Sleep"
        state = "idle in transaction" if idle and in_trx else ("idle" if idle else str(command).lower())
        b = Backend(sid, "", state, str(host or ""), float(seconds or 0))
        if sid not in registered:
            owner = owners.setdefault("(no registry lists it)", Owner("(no registry lists it)"))
        else:
            pid, entry = registered[sid]
            gone = not alive(pid)
            key = f"pid {pid} ({'gone' if gone else comm(pid)})"
            owner = owners.setdefault(key, Owner(key))
            if gone:
                why = _mysql.unproven(
                    entry, _mysql.Session(str(user), str(host or ""), str(command)), server_started, held
                )
                _flag(owner, ORPHAN if not why else f"owner pid gone, unverified: session {why}; no verdict")
        owner.backends.append(b)
        if state == "idle in transaction":
            _flag(owner, "idle in transaction")
    return list(owners.values())


def run_mysql(wrapper: Any) -> int:
    """`forkhooks connections` on a MySQL/MariaDB alias: sessions by owner process, proven orphans flagged."""
    params = dict(wrapper.get_connection_params())
    params.update(connect_timeout=5, read_timeout=10, write_timeout=10)
    try:
        conn = wrapper.Database.connect(**params)
    except Exception as exc:
        print(f"forkhooks connections: cannot connect: {error_text(exc)}", file=sys.stderr)
        return UNREACHABLE
    try:
        cur = conn.cursor()
        started = _mysql.server_started(cur)
        cur.execute(_MYSQL_QUERY)
        rows = list(cur.fetchall())
    finally:
        conn.close()
    owners = group_mysql(rows, _registered(_mysql.server_of(params)), started)
    print(render(owners))
    return ALARMING if any(ORPHAN in o.flags for o in owners) else CLEAN
