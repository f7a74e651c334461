"""Find Django's connections and pools; never imports Django if the app has not."""

from __future__ import annotations

import sys
import weakref
from collections.abc import Iterator
from typing import Any

# Every wrapper that ever connected in this process, whatever thread it lives
# in: Django keeps wrappers in a threading.local that cannot be enumerated, and
# a child must find the ones other threads held at fork time too.
_seen: weakref.WeakSet[Any] = weakref.WeakSet()


def _remember(sender: Any, connection: Any, **kwargs: Any) -> None:
    _seen.add(connection)
    if connection.vendor == "mysql":
        from .mysql import remember

        try:
            params = connection.get_connection_params()  # where its registry entry says it connected
        except Exception:
            params = None
        remember(connection.connection, params)


def watch() -> None:
    """Remember wrappers as they connect (one WeakSet.add per new connection), if Django is loaded."""
    if "django" not in sys.modules:  # a process without Django never imports it because of us
        return
    from django.db.backends.signals import connection_created

    if _watching:
        return
    connection_created.connect(_remember, weak=False, dispatch_uid="forkhooks.remember")
    _watching.append(True)
    # Connections this thread opened before (an app that queries as it loads, in a worker that loads it
    # itself): remembered now, as if at their connect.
    for wrapper in current_thread_wrappers():
        if wrapper.connection is not None:
            try:
                _remember(None, wrapper)
            except Exception:  # a broken connection: nothing to remember
                pass


_watching: list[bool] = []  # the receiver is connected (a forked child inherits it, and this)


def handler() -> Any | None:
    """django.db.connections if the process loaded Django's database layer, else None."""
    db = sys.modules.get("django.db")
    return getattr(db, "connections", None)


def wrappers() -> list[Any]:
    """Every Django wrapper this process knows: this thread's slots and all seen ones."""
    found: dict[int, Any] = {id(w): w for w in list(_seen)}
    found.update((id(w), w) for w in current_thread_wrappers())
    return list(found.values())


def current_thread_wrappers() -> list[Any]:
    """The wrappers held in this thread's slots (the only ones it may close)."""
    conns = handler()
    # `settings` is a cached_property: absent means no wrapper was ever built.
    if conns is None or "settings" not in conns.__dict__:
        return []
    return list(conns.all(initialized_only=True))


def reset_handler() -> None:
    """Forget every slot, so that fresh wrappers are created on next use."""
    conns = handler()
    if conns is None:
        return
    from asgiref.local import Local

    from .sockets import graveyard

    # Keep the old slots alive: freeing the inherited wrappers (and all they
    # reference) would write to shared pages, a copy-on-write fault each, and
    # cost most of post_fork's time (measured: ~1 ms of 1.3 ms).
    graveyard.append(conns._connections)
    conns._connections = Local(conns.thread_critical)
    _seen.clear()


def database_settings() -> dict[str, dict[str, Any]]:
    """DATABASES as Django's handler holds it (mutable), or {} when Django is not configured."""
    conns = handler()
    if conns is None:
        return {}
    try:
        return dict(conns.settings)
    except Exception:  # settings not configured (ImproperlyConfigured): nothing to do
        return {}


def pool_dicts() -> Iterator[dict[Any, Any]]:
    """Each class-level `_connection_pools` dict of every loaded backend, once."""
    base = sys.modules.get("django.db.backends.base.base")
    if base is None:
        return
    seen: set[int] = set()
    stack = [base.BaseDatabaseWrapper]
    while stack:
        cls = stack.pop()
        stack.extend(cls.__subclasses__())
        pools = vars(cls).get("_connection_pools")
        if isinstance(pools, dict) and id(pools) not in seen:
            seen.add(id(pools))
            yield pools


def forget_transaction(wrapper: Any) -> None:
    """Leave the wrapper as Django leaves one closed inside atomic(): no commit, no rollback."""
    wrapper.connection = None
    if getattr(wrapper, "in_atomic_block", False):
        wrapper.closed_in_transaction = True
        wrapper.needs_rollback = True


def pooled_aliases() -> list[str]:
    """Aliases whose settings turn pooling on (OPTIONS['pool'])."""
    return [a for a, db in database_settings().items() if db.get("OPTIONS", {}).get("pool")]


def pool_of(alias: str) -> Any | None:
    """The pool Django uses for `alias` (created lazily, not opened)."""
    conns = handler()
    return getattr(conns[alias], "pool", None) if conns is not None else None


def try_building_pools() -> list[str]:
    """Build each alias's pool object and drop it again (opens nothing); a message per alias that cannot build one.

    A pool that existed before is left alone: a check run in a worker must not drop its open pool.
    """
    problems = []
    conns = handler()
    for alias in pooled_aliases():
        try:
            pools = getattr(type(conns[alias]), "_connection_pools", {})  # type: ignore[index]
            existed = alias in pools
            pool = pool_of(alias)  # Django builds the pool object lazily, with open=False
        except Exception as exc:
            problems.append(f"DATABASES[{alias!r}]['OPTIONS']['pool'] is invalid: {type(exc).__name__}: {exc}")
            continue
        if not existed:  # the master must not keep it: drop the unopened object
            forget_pool(alias, pool)
    return problems


def forget_pool(alias: str, pool: Any) -> None:
    """Remove `pool` from Django's pools if it is still the one for `alias`: the next use builds a fresh one."""
    conns = handler()
    if conns is None:
        return
    pools = type(conns[alias])._connection_pools
    if pools.get(alias) is pool:
        del pools[alias]
