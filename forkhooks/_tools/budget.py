"""Will the deployment's connections fit in what the PostgreSQL server allows?

Too many workers times pool max_size ends in PostgreSQL's "remaining connection
slots are reserved" or pgbouncer's max_client_conn refusing clients. The sum is
simple and worth checking before the first fork: every worker (and dirty worker)
opens up to each pool's max_size, and without a pool up to one connection per
thread and alias.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .._core import djangodb as _django

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
    limits: str = ""

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
    """Connections each PostgreSQL server may see from this deployment's Django settings."""
    budgets: dict[str, Budget] = {}
    for alias, db in _django.database_settings().items():
        if "postgresql" not in db.get("ENGINE", ""):
            continue
        server = f"{db.get('HOST') or 'localhost'}:{db.get('PORT') or 5432}"
        budget = budgets.setdefault(server, Budget(server, alias))
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


def read_limits(budget: Budget) -> None:
    """Fill `available` from the server: max_connections minus the reserved slots (one short connection)."""
    conns = _django.handler()
    assert conns is not None
    wrapper = conns[budget.alias]
    params = wrapper.get_connection_params()
    params.setdefault("connect_timeout", 3)
    conn = wrapper.Database.connect(**params)
    try:
        cur = conn.cursor()
        cur.execute(
            "SELECT name, setting::int FROM pg_settings WHERE name IN"
            " ('max_connections', 'superuser_reserved_connections', 'reserved_connections')"
        )
        values = dict(cur.fetchall())
    finally:
        conn.close()
    budget.available = values["max_connections"] - sum(
        values.get(k, 0) for k in ("superuser_reserved_connections", "reserved_connections")
    )
    budget.limits = " - ".join(f"{k}={v}" for k, v in sorted(values.items(), key=lambda kv: kv[0] != "max_connections"))


def check(workers: int, threads: int = 1, dirty_workers: int = 0, dirty_threads: int = 1) -> list[Budget]:
    """Plan the budget and read each server's limits (errors leave `available` unknown)."""
    budgets = plan(workers, threads, dirty_workers, dirty_threads)
    for budget in budgets:
        try:
            read_limits(budget)
        except Exception as exc:  # server down: the budget is a warning, never a failure
            budget.limits = f"could not read: {type(exc).__name__}: {str(exc).strip()[:120]}"
    return budgets


# `forkhooks check`: the same sum from the command line, for CI and deploy scripts.
HELP = "check that workers x pool sizes fit in the PostgreSQL server's max_connections"


def add_arguments(parser: Any) -> None:
    """Options of `forkhooks check`."""
    parser.add_argument("--workers", type=int, required=True, help="gunicorn/uWSGI worker processes")
    parser.add_argument("--threads", type=int, default=1, help="threads per worker (gthread, uWSGI threads)")
    parser.add_argument("--dirty-workers", type=int, default=0, help="gunicorn dirty workers")
    parser.add_argument("--dirty-threads", type=int, default=1, help="threads per dirty worker")
    parser.add_argument("--settings", help="Django settings module (else DJANGO_SETTINGS_MODULE)")


def run(args: Any) -> int:
    """Print each server's budget; exit 1 when one is over, 2 when Django cannot be set up."""
    import os

    if args.settings:
        os.environ["DJANGO_SETTINGS_MODULE"] = args.settings
    if not os.environ.get("DJANGO_SETTINGS_MODULE"):
        print("forkhooks check: no Django settings; pass --settings or set DJANGO_SETTINGS_MODULE")
        return 2
    try:
        import django

        django.setup()
    except Exception as exc:
        print(f"forkhooks check: cannot set Django up: {type(exc).__name__}: {exc}")
        return 2
    budgets = check(args.workers, args.threads, args.dirty_workers, args.dirty_threads)
    if not budgets:
        print("forkhooks check: no PostgreSQL database in DATABASES")
    for budget in budgets:
        print(budget)
        if budget.over:
            print(f"  fix: {budget.fix()}")
    return 1 if any(b.over for b in budgets) else 0
