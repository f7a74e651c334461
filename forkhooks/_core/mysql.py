"""MySQL/MariaDB drivers (mysqlclient's MySQLdb, PyMySQL): is a query running, and cancel it the MySQL way.

MySQL has no cancel request on the side like PostgreSQL's: a running statement is
stopped by `KILL QUERY <thread id>` sent over another connection. Neither driver
says whether a statement is in progress, so "running" means: some thread is
inside the driver, working for this connection, right now.
"""

from __future__ import annotations

import math
import sys
import weakref
from types import FrameType
from typing import Any

_DRIVERS = ("MySQLdb", "pymysql")

# Each connection's server thread id, noted when it connected: mysqlclient (>= 2.3) locks a
# connection for every call, thread_id() included, so a query running in another thread
# would make asking for it then fail ("already in use from another thread").
_thread_ids: weakref.WeakKeyDictionary[Any, int] = weakref.WeakKeyDictionary()


def is_mysql(conn: Any) -> bool:
    """Whether `conn` is a mysqlclient or PyMySQL connection (PyMySQL installed as MySQLdb too)."""
    return type(conn).__module__.split(".", 1)[0] in _DRIVERS


def remember(conn: Any) -> None:
    """Note a new MySQL connection's server thread id (one C call), for a KILL QUERY later."""
    if is_mysql(conn):
        _thread_ids[conn] = int(conn.thread_id())


def busy(conn: Any) -> bool:
    """Whether some thread's stack is inside the driver for `conn` (a query or a fetch in progress).

    This sees the interrupted request under a signal handler in the same thread (PyMySQL
    reads in Python, so gunicorn's worker_abort runs mid-query) and other threads' requests
    (gthread workers). mysqlclient blocks in C: its own thread's handler runs only after the query.
    """
    for top in list(sys._current_frames().values()):
        frame: FrameType | None = top
        while frame is not None:
            module = frame.f_globals.get("__name__", "")
            if module.split(".", 1)[0] in _DRIVERS:
                owner = frame.f_locals.get("self")
                # the connection itself, a cursor of it, or PyMySQL's MySQLResult being read
                if owner is conn or getattr(owner, "connection", None) is conn:
                    return True
            frame = frame.f_back
    return False


def kill_query(wrapper: Any, conn: Any, timeout: float) -> None:
    """Send KILL QUERY for `conn`'s session over one short connection built from `wrapper`'s settings.

    Bounded: connect, read and write timeouts (whole seconds, as both drivers take them).
    """
    thread_id = _thread_ids.get(conn)
    if thread_id is None:  # connected before forkhooks watched: PyMySQL answers without a lock
        thread_id = int(conn.thread_id())
    seconds = max(1, math.ceil(timeout))
    params = dict(wrapper.get_connection_params())
    params.update(connect_timeout=seconds, read_timeout=seconds, write_timeout=seconds)
    killer = wrapper.Database.connect(**params)
    try:
        cursor = killer.cursor()
        cursor.execute(f"KILL QUERY {thread_id}")
        cursor.close()
    finally:
        killer.close()
