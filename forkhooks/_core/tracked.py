"""Pools that users create themselves: track() them, and the core discards, closes and warms them too.

Each supported kind is reset *in place* in a forked child, so the object the
application holds stays the one to use: no proxy, no getpid() per getconn.
Anything else can be built per process with PerProcess(factory).
"""

from __future__ import annotations

import logging
import sys
import threading
import time
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


class NotReady(Exception):
    """A pool short of its minimum size when warm()'s time was up: one warning line, never a traceback."""

    def __init__(self, label: str, reason: str, then: str) -> None:
        super().__init__(reason)
        self.label = label  # what the pool is called in the log
        self.reason = reason  # how far it got, and the last connection error
        self.then = then  # what happens next, for the operator


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


def one_line(exc: object) -> str:
    """A driver error on one line (libpq's messages span several)."""
    return " ".join(str(exc).split())


# psycopg_pool's own line for a failed connection attempt (psycopg_pool.ConnectionPool._add_connection).
_CONNECT_ERROR = "error connecting in %r: %s"


class _LastConnectError(logging.Handler):
    """The last connection error psycopg_pool logs for one pool while warm() waits: the reason in its warning."""

    def __init__(self, pool_name: str) -> None:
        super().__init__(logging.WARNING)
        self.pool_name = pool_name
        self.error = ""

    def emit(self, record: logging.LogRecord) -> None:
        args = record.args
        if record.msg == _CONNECT_ERROR and isinstance(args, tuple) and len(args) == 2 and args[0] == self.pool_name:
            self.error = one_line(args[1])


@dataclass(frozen=True)
class Waited:
    """How a wait for a psycopg_pool pool's min_size ended."""

    ready: bool
    idle: int  # connections in the pool when the wait ended
    error: str  # the last connection error psycopg_pool logged meanwhile, or ""


# How often wait_min_size() looks at the pool: a worker starts at most this much later than its pool is full.
_POLL = 0.02


def wait_min_size(pool: Any, timeout: float) -> Waited:
    """Open a psycopg_pool pool if it is not, then wait up to `timeout` s for min_size idle connections.

    Not psycopg_pool's wait() (nor open(wait=True)): on timeout it closes the pool, and a
    closed pool can never be reopened ("pool has already been opened/closed"); Django keeps
    the object and every later request fails. Its ready event is private and allows one
    waiter, so this polls the public stats instead: one short lock every _POLL seconds.
    time.sleep is looked up at each call, so a gevent-patched worker yields while it waits.
    """
    pool.open(wait=False)
    watch = _LastConnectError(str(getattr(pool, "name", "")))
    logger = logging.getLogger("psycopg.pool")
    logger.addHandler(watch)
    try:
        deadline = time.monotonic() + timeout
        while True:
            idle = int(pool.get_stats().get("pool_available", 0))
            if idle >= pool.min_size:
                return Waited(True, idle, "")
            left = deadline - time.monotonic()
            if left <= 0:
                return Waited(False, idle, watch.error)
            time.sleep(min(_POLL, left))
    finally:
        logger.removeHandler(watch)


def _warm_psycopg_pool(pool: Any, timeout: float) -> str | None:
    if pool._closed:
        return None
    label = f"{pool.name!r}"
    waited = wait_min_size(pool, timeout)  # never closes: the application holds this object
    if not waited.ready:
        reason = f"{waited.idle} of min_size={pool.min_size} connections"
        raise NotReady(label, f"{reason}: {waited.error}" if waited.error else reason, "the pool keeps connecting")
    return f"{label} ({pool.min_size} connections)"


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
    label = "psycopg2 pool"
    driver_error = getattr(sys.modules.get("psycopg2"), "Error", Exception)
    deadline = time.monotonic() + timeout
    with getattr(pool, "_lock", None) or nullcontext():  # SimpleConnectionPool has no lock
        while (held := len(pool._pool) + len(pool._used)) < pool.minconn:
            # Bounded between attempts; one attempt is bounded by the DSN's connect_timeout (libpq's own).
            if time.monotonic() > deadline:
                raise NotReady(label, f"{held} of minconn={pool.minconn} connections", "getconn() connects on use")
            try:
                pool._connect()
            except driver_error as exc:  # server down: the pool stays usable, getconn() connects on demand
                reason = f"{held} of minconn={pool.minconn} connections: {one_line(exc)}"
                raise NotReady(label, reason, "getconn() connects on use") from None
    return f"{label} ({pool.minconn} connections)"


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
        obj: T | None = self._obj
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
