"""Will the deployment's connections fit in what the PostgreSQL (or MySQL/MariaDB) server allows?

Too many workers times pool max_size ends in PostgreSQL's "remaining connection
slots are reserved" or pgbouncer's max_client_conn refusing clients. The sum is
simple and worth checking before the first fork: every worker (and dirty worker)
opens up to each pool's max_size, and without a pool up to one connection per
thread and alias.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Any

from .._core import djangodb as _django
from .common import at_least, error_text, use_settings

# psycopg_pool's defaults: min_size=4, max_size=None meaning max_size=min_size.
_PSYCOPG_POOL_MIN_SIZE = 4


@dataclass
class Budget:
    """Connections one server must accept from this deployment, and what it allows."""

    server: str
    alias: str  # one alias on this server, to read its limits with
    need: int = 0
    terms: list[str] = field(default_factory=list)
    available: int | None = None
    limits: str = ""  # the server's settings, or why they could not be read
    mysql: bool = False  # a MySQL/MariaDB server (else PostgreSQL)

    @property
    def unknown(self) -> bool:
        """True when the server's limits could not be read."""
        return self.available is None

    @property
    def over(self) -> bool:
        """True when the deployment can open more connections than the server accepts."""
        return self.available is not None and self.need > self.available

    def __str__(self) -> str:
        head = f"{self.server}: {' + '.join(self.terms) or '0'} = {self.need} connections"
        if self.available is None:
            return f"{head}; server limit unknown ({self.limits or 'not read'})"
        verdict = "over budget" if self.over else "fits"
        return f"{head}; server allows {self.available} ({self.limits}): {verdict}"

    def fix(self) -> str:
        """What to change when over budget."""
        if self.mysql:  # no pool in Django's MySQL backend: one connection per thread and alias
            return f"lower workers or threads so that the total is <= {self.available}, or raise max_connections"
        return (
            f"lower workers or pool max_size so that the total is <= {self.available}, raise max_connections, "
            f"or put pgbouncer in front (with max_client_conn >= {self.need} and a smaller server pool)"
        )


def pool_max_size(options: dict[str, Any]) -> int | None:
    """max_size of the psycopg pool configured in an alias's OPTIONS, None without a pool."""
    pool = options.get("pool")
    if not pool:
        return None
    pool = {} if pool is True else pool
    return int(pool.get("max_size") or pool.get("min_size") or _PSYCOPG_POOL_MIN_SIZE)


def plan(workers: int, threads: int = 1, dirty_workers: int = 0, dirty_threads: int = 1) -> list[Budget]:
    """Connections each PostgreSQL or MySQL server may see from this deployment's Django settings."""
    budgets: dict[str, Budget] = {}
    for alias, db in _django.database_settings().items():
        engine = db.get("ENGINE", "")
        if "postgresql" not in engine and "mysql" not in engine:
            continue
        server = _server_label(db, mysql="mysql" in engine)
        budget = budgets.setdefault(server, Budget(server, alias, mysql="mysql" in engine))
        size = pool_max_size(db.get("OPTIONS", {}))
        for count, per_process_threads, what in (
            (workers, threads, "workers"),
            (dirty_workers, dirty_threads, "dirty"),
        ):
            if not count:
                continue
            per = size if size is not None else per_process_threads
            unit = f"pool max_size {alias!r}" if size is not None else f"threads, {alias!r} without pool"
            budget.need += count * per
            budget.terms.append(f"{count} {what} x {per} ({unit})")
    return list(budgets.values())


def _server_label(db: dict[str, Any], *, mysql: bool) -> str:
    """The server an alias reaches, as one line: `host:port`, or a MySQL Unix socket's path."""
    if mysql:
        # Django's MySQL backend: OPTIONS["unix_socket"], or a HOST that starts with "/", is a socket
        # (two servers on two sockets are two budgets, not one "localhost:3306").
        options = db.get("OPTIONS") or {}
        sock = options.get("unix_socket") if isinstance(options, dict) else None
        host = str(db.get("HOST") or "")
        if sock or host.startswith("/"):
            return str(sock or host)
    return f"{db.get('HOST') or 'localhost'}:{db.get('PORT') or (3306 if mysql else 5432)}"


def read_limits(budget: Budget) -> None:
    """Fill `available` from the server: max_connections minus the reserved slots (one short connection)."""
    conns = _django.handler()
    assert conns is not None
    wrapper = conns[budget.alias]
    params = wrapper.get_connection_params()
    params.setdefault("connect_timeout", 3)
    try:
        conn = wrapper.Database.connect(**params)
    except Exception as exc:
        raise _Unreadable(f"cannot connect: {error_text(exc)}") from exc
    mysql = wrapper.vendor == "mysql"
    try:
        cur = conn.cursor()
        if mysql:  # MySQL/MariaDB: no slots reserved out of max_connections (SUPER gets one extra)
            cur.execute("SELECT @@max_connections")
            values = {"max_connections": int(cur.fetchone()[0])}
        else:
            cur.execute(
                "SELECT name, setting::int FROM pg_settings WHERE name IN"
                " ('max_connections', 'superuser_reserved_connections', 'reserved_connections')"
            )
            values = dict(cur.fetchall())
    except Exception as exc:
        raise _Unreadable(f"cannot read {'max_connections' if mysql else 'pg_settings'}: {error_text(exc)}") from exc
    finally:
        conn.close()
    budget.available = values["max_connections"] - sum(
        values.get(k, 0) for k in ("superuser_reserved_connections", "reserved_connections")
    )
    budget.limits = " - ".join(f"{k}={v}" for k, v in sorted(values.items(), key=lambda kv: kv[0] != "max_connections"))


class _Unreadable(Exception):
    """The server's limits could not be read; the message says why, in one line."""


def check(workers: int, threads: int = 1, dirty_workers: int = 0, dirty_threads: int = 1) -> list[Budget]:
    """Plan the budget and read each server's limits (errors leave `available` unknown, and say why)."""
    budgets = plan(workers, threads, dirty_workers, dirty_threads)
    for budget in budgets:
        try:
            read_limits(budget)
        except _Unreadable as exc:  # server down: the budget is a warning, never a failure
            budget.limits = str(exc)
        except Exception as exc:
            budget.limits = f"cannot read the limits: {error_text(exc)}"
    return budgets


# `forkhooks check`: the same sum from the command line, for CI and deploy scripts.
HELP = "check that workers x pool sizes fit in the PostgreSQL server's max_connections"

# Exit statuses; when several apply, the first of INVALID_POOL, OVER, UNKNOWN.
FITS, OVER, USAGE, UNKNOWN, INVALID_POOL = 0, 1, 2, 3, 4

EPILOG = f"""exit status:
  {FITS}  every server's connections fit
  {OVER}  over budget on a server (the line says by how much, and the fix)
  {USAGE}  usage error: a bad option, no Django settings, or settings that cannot be loaded
  {UNKNOWN}  a server's limits could not be read (the line says why: cannot connect: ...)
  {INVALID_POOL}  an OPTIONS['pool'] cannot build a pool: a master with forkhooks refuses to start
when several apply: {INVALID_POOL}, then {OVER}, then {UNKNOWN}"""


def add_arguments(parser: Any) -> None:
    """Options of `forkhooks check`."""
    parser.add_argument("--workers", type=at_least(1), required=True, help="gunicorn/uWSGI worker processes")
    parser.add_argument("--threads", type=at_least(1), default=1, help="threads per worker (gthread, uWSGI threads)")
    parser.add_argument("--dirty-workers", type=at_least(0), default=0, help="gunicorn dirty workers")
    parser.add_argument("--dirty-threads", type=at_least(1), default=1, help="threads per dirty worker")
    parser.add_argument("--settings", help="Django settings module (else DJANGO_SETTINGS_MODULE)")


def _say(message: str) -> None:
    print(f"forkhooks check: {message}", file=sys.stderr)


def run(args: Any) -> int:
    """Print each server's budget; the exit status says over budget, unknown or invalid (EPILOG)."""
    if not use_settings(args.settings):
        _say("no Django settings; pass --settings or set DJANGO_SETTINGS_MODULE")
        return USAGE
    try:
        import django

        django.setup()
    except Exception as exc:
        _say(f"cannot set Django up: {error_text(exc)}")
        return USAGE
    problems = _django.try_building_pools()
    for problem in problems:
        print(f"forkhooks.E001 {problem}")
        print("  a gunicorn or uWSGI master with forkhooks refuses to start with it: every request would fail")
    budgets = check(args.workers, args.threads, args.dirty_workers, args.dirty_threads)
    if not budgets:
        print("forkhooks check: no PostgreSQL or MySQL database in DATABASES")
    for budget in budgets:
        print(budget)
        if budget.over:
            print(f"  fix: {budget.fix()}")
    if problems:
        return INVALID_POOL
    if any(b.over for b in budgets):
        return OVER
    return UNKNOWN if any(b.unknown for b in budgets) else FITS
