"""`forkhooks connections`: the server's backends grouped by the process that holds them."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from typing import Any

from .appname import Owner as Named
from .appname import alive, ours, parse
from .common import error_text, use_settings

_QUERY = """
SELECT pid, application_name, state, client_addr::text,
       extract(epoch FROM now() - coalesce(state_change, backend_start))::float
FROM pg_stat_activity
WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()
ORDER BY application_name, pid
"""


@dataclass
class Backend:
    """One server backend and what its application_name says of its owner."""

    pid: int
    application_name: str
    state: str
    client_addr: str | None
    idle_seconds: float

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


def fetch(conn: Any) -> list[Backend]:
    """Every client backend but our own, from pg_stat_activity."""
    cur = conn.cursor()
    cur.execute(_QUERY)
    return [Backend(int(r[0]), r[1] or "", r[2] or "", r[3], float(r[4] or 0)) for r in cur.fetchall()]


def group(backends: list[Backend]) -> list[Owner]:
    """Group backends by owner process and flag orphans, idle-in-transaction ones, and masters."""
    owners: dict[str, Owner] = {}
    for b in backends:
        who = b.owner
        key = f"{who[1]} {who[2]} ({who[0]})" if who else (b.application_name or "(no application_name)")
        owner = owners.setdefault(key, Owner(key))
        owner.backends.append(b)
        if ours(who) and not alive(who.pid) and "ORPHAN: owner pid gone" not in owner.flags:
            owner.flags.append("ORPHAN: owner pid gone")
        if who and who[1] == "master" and "held by a master" not in owner.flags:
            owner.flags.append("held by a master")
        if b.state.startswith("idle in transaction") and "idle in transaction" not in owner.flags:
            owner.flags.append("idle in transaction")
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
            lines.append(f"    backend {b.pid:>7}  {b.state or '-':<20} idle {b.idle_seconds:8.1f}s")
    return "\n".join(lines)


# `forkhooks connections`: which process holds which of my server's connections?
HELP = "list the server's backends grouped by owner process; flag orphans, idle in transaction, masters"


def add_arguments(parser: Any) -> None:
    """Options of `forkhooks connections`."""
    parser.add_argument("--dsn", help="libpq DSN of the server (else FORKHOOKS_DSN, else Django settings)")
    parser.add_argument("--settings", help="Django settings module to take the server from")
    parser.add_argument("--alias", default="default", help="Django database alias (with --settings)")


def _connect(args: Any) -> Any:
    dsn = args.dsn or os.environ.get("FORKHOOKS_DSN")
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
  {ALARMING}  an orphan (owner pid gone on this host) or a backend held by a master
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
    """Print the report; exit 1 when an orphan or a master-held backend is found (EPILOG)."""
    if not (args.dsn or os.environ.get("FORKHOOKS_DSN")):
        problem = _django_ready(args)
        if problem:
            print(f"forkhooks connections: {problem}", file=sys.stderr)
            return USAGE
    try:
        conn = _connect(args)
    except Exception as exc:
        print(f"forkhooks connections: cannot connect: {error_text(exc)}", file=sys.stderr)
        return UNREACHABLE
    try:
        owners = group(fetch(conn))
    finally:
        conn.close()
    print(render(owners))
    alarming = {"ORPHAN: owner pid gone", "held by a master"}
    return ALARMING if any(alarming & set(o.flags) for o in owners) else CLEAN
