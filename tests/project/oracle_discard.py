"""Discard an oracledb pool in a forked child, without a server: which of oracledb's closing code runs, and where.

    python -m tests.project.oracle_discard with|without [--undo-keep]

Django's oracle backend builds a real python-oracledb ConnectionPool (thin mode, min 0: it connects
to nothing) in the parent; the parent forks a child that exits normally (sys.exit, as a gunicorn
worker does: the interpreter finalizes). ConnectionPool.close and __del__ (which closes every pooled
connection: a logoff sent down each socket) are wrapped to note the pid they run in. --undo-keep
releases, in the child, the reference forkhooks holds so that what a child discarded never finalizes
(the test's control). Prints one JSON line.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any


def main(argv: list[str]) -> None:
    """Build the pool, fork, report the calls noted in parent and child."""
    import django
    from django.conf import settings

    apps = ["forkhooks.django"] if argv[0] == "with" else []
    pool_options = {"min": 0, "max": 2, "increment": 1}
    database = {"NAME": "127.0.0.1:9/none", "USER": "u", "PASSWORD": "p", "OPTIONS": {"pool": pool_options}}
    settings.configure(INSTALLED_APPS=apps, DATABASES={"default": {"ENGINE": "django.db.backends.oracle", **database}})
    django.setup()
    import oracledb
    from django.db import connection
    from django.db.backends.oracle.base import DatabaseWrapper

    read, write = os.pipe()
    noted = os.write  # bound now: at the interpreter's exit, module globals may be gone

    def note(what: str, _pid: Any = os.getpid, _fd: int = write) -> None:
        # No json here: at the interpreter's exit its module may be torn down already.
        noted(_fd, f"{_pid()} {what}\n".encode())

    cls = oracledb.ConnectionPool
    close, finalize = cls.close, cls.__del__

    def spied_close(self: Any, *args: Any, **kwargs: Any) -> Any:
        note("ConnectionPool.close")
        return close(self, *args, **kwargs)

    def spied_del(self: Any) -> None:
        note("ConnectionPool.__del__")
        finalize(self)

    cls.close, cls.__del__ = spied_close, spied_del  # type: ignore[method-assign]
    pool = connection.pool
    kind = f"{type(pool).__module__}.{type(pool).__name__}"
    del pool
    pid = os.fork()
    if pid == 0:
        os.close(read)
        note(f"pools left {len(DatabaseWrapper._connection_pools)}")
        if "--undo-keep" in argv:
            import ctypes

            from forkhooks._core.sockets import graveyard

            ctypes.pythonapi.Py_DecRef(ctypes.py_object(graveyard))
        sys.exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    with os.fdopen(read) as lines:
        rows = [line.rstrip("\n").split(" ", 1) for line in lines]
    child = [what for who, what in rows if int(who) == pid]
    print(json.dumps({"pool": kind, "thin": oracledb.is_thin_mode(), "version": oracledb.__version__, "child": child}))


if __name__ == "__main__":
    main(sys.argv[1:])
