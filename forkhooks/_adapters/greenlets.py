"""What a worker must redo once gevent has monkey-patched it (gunicorn's gevent workers patch in the child).

With ``--preload`` the app, Django and the drivers were imported in the master,
before any patching: Django's connection handler keeps its slots in a real
``threading.local``, so every greenlet of a worker shares one wrapper and
Django refuses it ("DatabaseWrapper objects created in a thread can only be
used in that same thread"); psycopg 3 chose its blocking C wait at import, and
psycopg2 has no wait callback, so one query stops every greenlet of the worker
(as mysqlclient's always does: a warning names PyMySQL).

Nothing here imports gevent: it only looks at what the process already loaded.
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any

from .. import _core
from .._core import Log
from .._tools.appname import Role

# Names that modules bind at import time to what gevent patches later: a
# reference to the original stays blocking after patch_all(). Replaced only
# when it is still exactly gevent's saved original.
_CAPTURED = (
    ("psycopg.waiting", "DefaultSelector", "selectors", "DefaultSelector"),  # wait_conn: connecting
    ("psycopg_pool._acompat", "sleep", "time", "sleep"),
    ("psycopg_pool.pool", "sleep", "time", "sleep"),  # getconn's back-off after a failed check
)

# The pid after_patch() last ran in: a worker class and a hook both call it, and
# a second reset would throw away the pools the first call's warm-up opened.
_done_in: int | None = None


def patched() -> bool:
    """True when gevent has monkey-patched threading in this process."""
    monkey = sys.modules.get("gevent.monkey")
    if monkey is None:
        return False
    try:
        return bool(monkey.is_module_patched("threading"))
    except Exception:  # a gevent too old or too new to ask: assume not patched
        return False


def after_patch(*, log: Log | None = None, who: str = Role.WORKER) -> list[str]:
    """Once gevent patched this process: Django connections per greenlet, drivers that yield; what was done."""
    global _done_in
    log = log or _core.log
    if _done_in == os.getpid():
        return []
    _done_in = os.getpid()
    done: list[str] = []
    try:
        if _slots_per_greenlet():  # Django was imported after patching (no --preload): nothing to redo
            done.append("Django connections already per greenlet")
        else:
            _close_opened_before_patch(log, who)
            _core.djangodb.reset_handler()  # new slots: a threading.local now, which gevent made per greenlet
            done.append("Django connections per greenlet")
    except Exception:
        log.exception("forkhooks: resetting Django's connections after gevent patched failed; continuing")
    for step in (_psycopg, _psycopg2, _mysqlclient, _captured):
        try:
            found = step(log)
            if found:
                done.append(found)
        except Exception:
            log.exception("forkhooks: making %s cooperative under gevent failed; continuing", step.__name__[1:])
    log.info("forkhooks: %s %d after gevent patched: %s", who, os.getpid(), "; ".join(done) or "nothing to do")
    return done


def _slots_per_greenlet() -> bool:
    """True when Django's handler keeps its slots in gevent's local (created after patching)."""
    conns = _core.djangodb.handler()
    if conns is None:
        return True  # Django's database layer not loaded: it will be created patched
    storage = getattr(getattr(conns, "_connections", None), "_storage", None)  # asgiref Local's thread-local
    local = getattr(sys.modules.get("gevent.local"), "local", None)
    return local is not None and isinstance(storage, local)


def _close_opened_before_patch(log: Log, who: str) -> None:
    """Close what the worker opened itself before patching (an app that queries at import, without --preload)."""
    opened = any(w.connection is not None for w in _core.djangodb.current_thread_wrappers())
    if opened or any(_core.djangodb.pool_dicts()) or _core.tracked.tracked():
        # Its pools run real threads and its wrappers sit in the old slots: close them properly, as their owner.
        _core.close(log=log, who=who)


def _psycopg(log: Log) -> str:
    """psycopg 3 picks its wait function at import: pick again, as it would have after patching."""
    waiting: Any = sys.modules.get("psycopg.waiting")
    if waiting is None or "PSYCOPG_WAIT_FUNC" in os.environ:  # not loaded, or the user chose
        return ""
    if getattr(waiting, "wait", None) is not getattr(waiting, "wait_c", object()):
        return ""  # already a Python wait (psycopg imported after patching, or no C module)
    if not waiting._is_select_patched():
        return ""
    waiting.wait = waiting.wait_poll  # what psycopg picks on Linux when select is patched
    if hasattr(waiting, "_ready_poll"):
        waiting._ready = waiting._ready_poll
    return "psycopg waits through gevent"


def _psycopg2(log: Log) -> str:
    """psycopg2 blocks the whole worker in every query unless a gevent wait callback is set (psycogreen)."""
    psycopg2 = sys.modules.get("psycopg2")
    if psycopg2 is None:  # not loaded (or hidden with sys.modules["psycopg2"] = None)
        return ""
    extensions: Any = importlib.import_module("psycopg2.extensions")
    if extensions.get_wait_callback() is not None:
        return "psycopg2 wait callback already set"
    try:
        from psycogreen.gevent import patch_psycopg
    except ImportError:
        log.warning(
            "forkhooks: psycopg2 blocks every greenlet of this worker while a query runs: "
            "pip install psycogreen (or 'forkhooks[gevent]') and forkhooks sets its wait callback"
        )
        return ""
    patch_psycopg()
    return "psycopg2 waits through gevent (psycogreen)"


def _mysqlclient(log: Log) -> str:
    """mysqlclient waits for the server in C, where gevent cannot switch: one query stops every greenlet."""
    mysqldb = sys.modules.get("MySQLdb")
    if mysqldb is None or getattr(mysqldb, "__name__", "") != "MySQLdb":  # not loaded, or PyMySQL as MySQLdb
        return ""
    log.warning(
        "forkhooks: mysqlclient blocks every greenlet of this worker while a query runs: PyMySQL reads "
        "through gevent's sockets (pip install PyMySQL, and pymysql.install_as_MySQLdb() in your settings)"
    )
    return ""


def _captured(log: Log) -> str:
    """Point names bound before patching (time.sleep, selectors.DefaultSelector) at gevent's versions."""
    monkey = sys.modules["gevent.monkey"]
    fixed = []
    for module_name, name, source, attr in _CAPTURED:
        module = sys.modules.get(module_name)
        if module is None or not monkey.is_module_patched(source):
            continue
        original = monkey.get_original(source, attr)
        if getattr(module, name, None) is original:
            setattr(module, name, getattr(sys.modules[source], attr))
            fixed.append(f"{module_name}.{name}")
    return f"rebound {', '.join(fixed)}" if fixed else ""
