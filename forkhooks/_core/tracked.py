"""Pools that users create themselves: track() them, and the core discards, closes and warms them too.

Each supported kind is reset *in place* in a forked child, so the object the
application holds stays the one to use: no proxy, no getpid() per getconn.
Anything else can be built per process with PerProcess(factory).
"""

from __future__ import annotations

import sys
import threading
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from .sockets import Inerter, graveyard, pool_connections

T = TypeVar("T")

# Weak: tracking must not keep a pool alive that the application dropped.
_tracked: weakref.WeakSet[Any] = weakref.WeakSet()
# Pools that close() closed: the next child brings them back open (a gunicorn
# master closes at when_ready, and every worker it forks needs a usable pool).
_closed_by_us: weakref.WeakSet[Any] = weakref.WeakSet()


@dataclass(frozen=True)
class _Kind:
    name: str
    discard: Callable[[Any, Inerter], None]
    close: Callable[[Any, float], bool]
    warm: Callable[[Any, float], str | None]


def _class(module: str, name: str) -> type | None:
    # Only classes of modules the application already imported: never import a driver here.
    mod = sys.modules.get(module)
    cls = getattr(mod, name, None)
    return cls if isinstance(cls, type) else None


# --- psycopg_pool (ConnectionPool, NullConnectionPool, AsyncConnectionPool) ---


def _reset_psycopg_pool(pool: Any, inert: Inerter) -> bool:
    """Bury idle connections and forget state tied to the parent's threads; True if it should reopen."""
    reopen = not pool._closed or pool in _closed_by_us
    for conn in list(pool._pool):
        inert.bury(conn)
    pool._pool.clear()
    pool._waiting.clear()
    pool._nconns = pool._nconns_min = pool._min_size
    pool._growing = False
    pool._pool_full_event = None
    pool._workers = []
    pool._sched_runner = None
    pool._opened, pool._closed = False, True
    _closed_by_us.discard(pool)
    return reopen


@contextmanager
def not_joining_current_thread(pool: Any) -> Iterator[None]:
    """Leave the calling thread out of the threads a psycopg_pool's close() joins.

    A process-wide signal can land on one of the pool's own threads and run the
    server's exit hook there; close() would then raise "cannot join current thread"
    and leave the pool half closed.
    """
    me = threading.current_thread()
    workers = getattr(pool, "_workers", None)
    if isinstance(workers, list) and me in workers:
        workers.remove(me)  # it gets no stop task: it is busy closing, and the process is exiting
    if getattr(pool, "_sched_runner", None) is me:
        pool._sched_runner = threading.Thread()  # never started: close() finds nothing alive to join
    yield


def _discard_psycopg_pool(pool: Any, inert: Inerter) -> None:
    reopen = _reset_psycopg_pool(pool, inert)
    # The parent's lock may have been held by one of its worker threads at fork.
    pool._lock = threading.Lock()
    if reopen:
        pool._open()  # new scheduler and workers in this process; connects in the background


def _discard_async_psycopg_pool(pool: Any, inert: Inerter) -> None:
    _reset_psycopg_pool(pool, inert)
    # An asyncio pool can only open inside a running loop: it comes back not yet
    # open, and `await pool.open()` in the app's startup opens it in this process.
    pool.__dict__.pop("_lock", None)


def _close_psycopg_pool(pool: Any, timeout: float) -> bool:
    if pool._closed:
        return False
    with not_joining_current_thread(pool):
        pool.close(timeout=timeout)
    _closed_by_us.add(pool)
    return True


def _warm_psycopg_pool(pool: Any, timeout: float) -> str | None:
    if pool._closed:
        return None
    pool.wait(timeout=timeout)
    return f"{pool.name!r} ({pool.min_size} connections)"


def _close_async(pool: Any, timeout: float) -> bool:
    # Its close() is a coroutine bound to the app's loop: close it in the app's shutdown.
    return False


def _no_warm(obj: Any, timeout: float) -> str | None:
    return None


# --- psycopg2.pool (SimpleConnectionPool, ThreadedConnectionPool) ---


def _discard_psycopg2_pool(pool: Any, inert: Inerter) -> None:
    for conn in [*pool._pool, *pool._used.values()]:
        inert.bury(conn)
    pool._pool.clear()
    pool._used.clear()
    pool._rused.clear()
    pool._keys = 0
    if hasattr(pool, "_lock"):
        pool._lock = threading.Lock()
    if pool in _closed_by_us:
        pool.closed = False
        _closed_by_us.discard(pool)
    # Not refilled to minconn here: getconn() connects on demand, warm() refills.


def _close_psycopg2_pool(pool: Any, timeout: float) -> bool:
    if pool.closed:
        return False
    pool.closeall()
    _closed_by_us.add(pool)
    return True


def _warm_psycopg2_pool(pool: Any, timeout: float) -> str | None:
    if pool.closed:
        return None
    with getattr(pool, "_lock", None) or nullcontext():  # SimpleConnectionPool has no lock
        while len(pool._pool) + len(pool._used) < pool.minconn:
            pool._connect()
    return f"psycopg2 pool ({pool.minconn} connections)"


# --- SQLAlchemy Engine ---


def _discard_engine(engine: Any, inert: Inerter) -> None:
    pool = engine.pool
    idle = getattr(getattr(pool, "_pool", None), "queue", ())  # QueuePool's deque, read without its lock
    records = [*idle, *getattr(pool, "_all_conns", ())]  # SingletonThreadPool
    for record in records:
        conn = getattr(record, "dbapi_connection", None)
        inert.bury(getattr(conn, "driver_connection", conn))  # asyncio dialects wrap the driver's
    graveyard.append(pool)  # its records must not finalize here either
    # SQLAlchemy's own recipe for a child: a new pool, the old one untouched.
    engine.dispose(close=False)


def _close_engine(engine: Any, timeout: float) -> bool:
    engine.dispose()  # closes checked-in connections; the engine stays usable
    return True


# --- PerProcess ---


class PerProcess(Generic[T]):
    """A lazy proxy that builds `factory()` on first use in each process; a forked child builds its own."""

    __slots__ = ("_factory", "_obj", "__weakref__")

    def __init__(self, factory: Callable[[], T]) -> None:
        object.__setattr__(self, "_factory", factory)
        object.__setattr__(self, "_obj", None)
        _tracked.add(self)

    def __getattr__(self, name: str) -> Any:
        # Only called for names the proxy lacks: the per-call cost is this one check.
        if name in PerProcess.__slots__:  # not set yet (copy, unpickle): no recursion
            raise AttributeError(name)
        obj = self._obj
        if obj is None:
            obj = self.get()
        return getattr(obj, name)

    def get(self) -> T:
        """The object for this process, built now if this process has none yet."""
        obj = self._obj
        if obj is None:
            obj = self._factory()
            object.__setattr__(self, "_obj", obj)
        return obj

    def __repr__(self) -> str:
        return f"<PerProcess {self._obj!r}>"


def _discard_per_process(proxy: PerProcess[Any], inert: Inerter) -> None:
    obj = proxy._obj
    if obj is None:
        return
    # Not the kind's own discard: that would reopen a pool this process drops anyway.
    for conn in pool_connections(obj) or [obj]:
        inert.bury(conn)  # also keeps `obj` itself alive, so no finalizer of it runs here
    graveyard.append(obj)
    object.__setattr__(proxy, "_obj", None)


def _close_per_process(proxy: PerProcess[Any], timeout: float) -> bool:
    obj = proxy._obj
    if obj is None:
        return False
    object.__setattr__(proxy, "_obj", None)  # the next use builds a fresh one
    kind = _kind_of(obj)
    if kind is not None:
        return kind.close(obj, timeout)
    close = getattr(obj, "close", None)
    if callable(close):
        close()
    return True


_PER_PROCESS = _Kind("PerProcess", _discard_per_process, _close_per_process, _no_warm)


def _kinds() -> list[tuple[type | None, _Kind]]:
    return [
        (
            _class("psycopg_pool", "AsyncConnectionPool"),
            _Kind("psycopg_pool.AsyncConnectionPool", _discard_async_psycopg_pool, _close_async, _no_warm),
        ),
        (
            _class("psycopg_pool", "ConnectionPool"),  # NullConnectionPool is one too
            _Kind("psycopg_pool.ConnectionPool", _discard_psycopg_pool, _close_psycopg_pool, _warm_psycopg_pool),
        ),
        (
            _class("psycopg2.pool", "AbstractConnectionPool"),
            _Kind("psycopg2.pool", _discard_psycopg2_pool, _close_psycopg2_pool, _warm_psycopg2_pool),
        ),
        (
            _class("sqlalchemy.engine", "Engine"),
            _Kind("sqlalchemy.Engine", _discard_engine, _close_engine, _no_warm),
        ),
    ]


SUPPORTED = (
    "psycopg_pool.ConnectionPool, NullConnectionPool, AsyncConnectionPool, "
    "psycopg2.pool.SimpleConnectionPool, ThreadedConnectionPool, sqlalchemy.Engine"
)


def _kind_of(obj: Any) -> _Kind | None:
    if isinstance(obj, PerProcess):
        return _PER_PROCESS
    for cls, kind in _kinds():
        if cls is not None and isinstance(obj, cls):
            return kind
    return None


def track(obj: T) -> T:
    """Register a pool or engine (weakly) so a forked child gets it back fresh; returns it."""
    if _kind_of(obj) is None:
        raise TypeError(
            f"forkhooks.track() supports {SUPPORTED}; got {type(obj).__module__}.{type(obj).__qualname__}. "
            "For anything else, build it per process: forkhooks.PerProcess(lambda: ...)"
        )
    _tracked.add(obj)
    return obj


def tracked() -> list[Any]:
    """Every tracked object still alive."""
    return list(_tracked)


def name(obj: Any) -> str:
    """A short label for log lines."""
    kind = _kind_of(obj)
    return kind.name if kind is not None else type(obj).__name__


def discard(obj: Any, inert: Inerter) -> None:
    """In a forked child: make `obj`'s inherited connections inert and leave it usable, sending nothing."""
    kind = _kind_of(obj)
    if kind is not None:
        kind.discard(obj, inert)


def close(obj: Any, timeout: float) -> bool:
    """In the owner: close `obj`'s connections (bounded); True if there was something to close."""
    kind = _kind_of(obj)
    return kind.close(obj, timeout) if kind is not None else False


def warm(obj: Any, timeout: float) -> str | None:
    """Fill `obj` to its minimum size; a label for the log line, or None if it has nothing to warm."""
    kind = _kind_of(obj)
    return kind.warm(obj, timeout) if kind is not None else None
