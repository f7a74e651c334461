"""Make an inherited database socket inert without sending a byte on it."""

from __future__ import annotations

import os
import stat
from collections import deque
from typing import Any

# Objects whose sockets were made inert in this process. They are kept alive on
# purpose: a finalizer (psycopg2's PQfinish, mysqlclient's COM_QUIT, an SQLite close that checkpoints
# the WAL, a pool's __del__ joining threads that no longer exist) must never
# run in a child on something the parent still owns. Cost: one /dev/null fd
# per inherited connection, once per process.
graveyard: list[Any] = []


def socket_fd(conn: Any) -> int | None:
    """Return the socket fd of a DB-API connection, or None if it has none."""
    try:
        pgconn = getattr(conn, "pgconn", None)  # psycopg 3
        sock = getattr(conn, "_sock", None)  # PyMySQL: a socket.socket (or SSLSocket), no fileno() of its own
        if pgconn is not None:
            fd = pgconn.socket
        elif sock is not None and not hasattr(conn, "fileno"):
            fd = sock.fileno()
        else:
            fd = conn.fileno()  # psycopg2, mysqlclient
        if isinstance(fd, int) and fd >= 0 and stat.S_ISSOCK(os.fstat(fd).st_mode):
            return fd
    except Exception:  # closed, broken, or a driver without sockets (sqlite3)
        pass
    return None


class Inerter:
    """Point inherited sockets at /dev/null: reads see EOF, writes go nowhere."""

    def __init__(self) -> None:
        self._devnull: int | None = None
        self.count = 0

    def bury(self, conn: Any) -> None:
        """Make `conn`'s socket inert and keep `conn` alive so it never finalizes here."""
        if conn is None:
            return
        fd = socket_fd(conn)
        if fd is not None:
            if self._devnull is None:
                self._devnull = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
            # dup2 replaces the descriptor atomically: libpq keeps its fd
            # number, the kernel socket loses this process's reference, and
            # anything written later (Terminate, TLS close_notify) is dropped.
            os.dup2(self._devnull, fd, inheritable=False)
        graveyard.append(conn)
        self.count += 1

    def close(self) -> None:
        """Release the /dev/null descriptor used for dup2."""
        if self._devnull is not None:
            os.close(self._devnull)
            self._devnull = None

    def __enter__(self) -> Inerter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def pool_connections(pool: Any) -> list[Any]:
    """Connections a pool holds itself: psycopg_pool's idle deque, psycopg2's lists."""
    idle = getattr(pool, "_pool", None)
    conns = list(idle) if isinstance(idle, (deque, list)) else []
    used = getattr(pool, "_used", None)  # psycopg2.pool: key -> checked-out conn
    if isinstance(used, dict):
        conns.extend(used.values())
    return conns


def _never_freed(obj: Any) -> None:
    """Hold one reference to `obj` that nothing releases, so not even the interpreter's exit frees it.

    At a normal exit (sys.exit in a gunicorn worker) the interpreter clears every module and frees
    what they held: the graveyard's objects would finalize then, in the child, after all.
    python-oracledb's ConnectionPool.__del__ closes every pooled connection and Connection.__del__
    calls close(): a logoff sent on the parent's sockets, which oracledb gives no descriptor to make
    inert. Measured with the real classes: the pool a child discarded was finalized at its exit.
    """
    try:
        import ctypes

        ctypes.pythonapi.Py_IncRef(ctypes.py_object(obj))
    except Exception:  # not CPython: the graveyard lives as long as the module, as before
        pass


_never_freed(graveyard)
