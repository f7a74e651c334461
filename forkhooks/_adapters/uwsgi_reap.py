"""End the backends of uWSGI children that died without closing: SIGKILL (harakiri, the OOM killer,
kill -9), or a stop signal that found them busy (uWSGI then skips ``uwsgi.atexit``).

A killed client does not stop its query: PostgreSQL runs it to the end. No
Python runs in a child that dies that way, and uWSGI's master runs no Python
while it supervises (nor ``uwsgi.atexit``: ``uwsgi_plugins_atexit`` skips the
master). Two points remain, both without a thread in the master (uWSGI #2387):

- a respawned child, in its post-fork hook, ends its predecessor's backends:
  the master forks it right after reaping the dead one. Each child records its
  pid in a slot of a table the master shares with all its children (an
  anonymous shared mapping made at import); the successor reads the old pid
  from its slot before writing its own. A child that closed cleanly empties
  its slot, so a normal recycle costs nothing.
- at shutdown nothing respawns: the master's C ``exit()``, once every child is
  reaped, calls back into Python (a C exit handler registered through ctypes)
  and ends the backends of every pid still recorded. Children disarm that
  handler right after fork, so it runs in the master only.
"""

from __future__ import annotations

import atexit
import ctypes
import mmap
import os
import time
from typing import Any

from .._core import Log
from .._tools import appname
from .._tools.appname import Role
from . import cancel

__all__ = ["arm_master_exit", "child_started", "clean_exit", "reap_recorded"]

# Slots of 4-byte pids: [1, MULES) worker ids, [MULES, OTHERS) mules, [OTHERS, SLOTS) spoolers and the like.
MULES = 2048
OTHERS = 3072
SLOTS = 4096
# The master's exit waits for the database at most this long in all (libpq's connect_timeout is 2 s per try).
EXIT_BUDGET = 5.0

_table: list[memoryview] = []
_my_slot: list[int] = []
_master: list[int] = []


def create(log: Log) -> None:
    """In the master, before any fork: the table its children record their pids in."""
    if _table:
        return
    try:
        shared = mmap.mmap(-1, SLOTS * 4)  # MAP_SHARED | MAP_ANONYMOUS: every child sees the same pages
        _table.append(memoryview(shared).cast("i"))
        _master.append(os.getpid())
    except Exception as exc:
        log.warning(
            "forkhooks: cannot share a pid table with uWSGI's children (%s); dead children's queries run on", exc
        )


def _slot_for(worker_id: int, mule_id: int) -> int | None:
    table = _table[0]
    if 0 < worker_id < MULES:
        return worker_id
    if 0 < mule_id < OTHERS - MULES:
        return MULES + mule_id
    # A spooler (or anything else the master forks) has no id: the first slot whose pid is gone. (Two
    # spoolers starting at the same instant may pick one slot; the first one's pid is then not kept.)
    for slot in range(OTHERS, SLOTS):
        pid = table[slot]
        if pid == 0 or not appname.alive(pid):
            return slot
    return None


def child_started(worker_id: int, mule_id: int, log: Log, who: str = Role.WORKER) -> None:
    """In a new child (after its app loaded): record its pid; end the backends of the one it replaces."""
    if not _table:
        return
    try:
        slot = _slot_for(worker_id, mule_id)
        if slot is None:
            return
        table = _table[0]
        previous = table[slot]
        table[slot] = os.getpid()
        _my_slot[:] = [slot]
        if previous and previous != os.getpid():
            _end(previous, log, who)
    except Exception as exc:  # the database unreachable, most likely: one line, and the child serves
        log.warning("forkhooks: could not end the backends of the process this one replaces (%s); continuing", exc)


def clean_exit() -> None:
    """This child closed everything it opened: nothing is left to end after it."""
    if _table and _my_slot:
        _table[0][_my_slot[0]] = 0


def _end(pid: int, log: Log, who: str) -> int:
    ended = cancel.end_backends_of(pid, log=log)
    if ended:
        log.warning(
            "forkhooks: %s %d: the process it replaces (%d) died without closing: ended %d backend(s) of it",
            who,
            os.getpid(),
            pid,
            ended,
        )
    return ended


def reap_recorded(log: Log) -> int:
    """In the master, its children gone: end the backends of every child that did not close; how many."""
    if not _table or _master != [os.getpid()]:
        return 0
    table = _table[0]
    ended = 0
    deadline = time.monotonic() + EXIT_BUDGET
    for slot in range(1, SLOTS):
        pid = table[slot]
        if not pid or appname.alive(pid):
            continue
        if time.monotonic() > deadline:
            log.warning("forkhooks: master: out of time ending dead children's backends; the rest run on")
            break
        try:
            ended += cancel.end_backends_of(pid, log=log)
        except Exception as exc:  # the database is unreachable: no point trying the next pid
            log.warning("forkhooks: master: could not end dead children's backends (%s)", exc)
            break
        table[slot] = 0
    if ended:
        log.warning(
            "forkhooks: master %d: ended %d backend(s) of children that died without closing", os.getpid(), ended
        )
    return ended


# --- The master's exit: a C exit handler, disarmed in every child. ---
#
# glibc's __cxa_atexit registers a handler under a "DSO handle"; __cxa_finalize(handle) runs and
# removes the handlers of that handle. A child runs it at once (the callback sees it is not the master
# and returns), so the handler never runs there at exit, where uWSGI has finalized Python by then.

_EXIT_HANDLER = ctypes.CFUNCTYPE(None, ctypes.c_void_p)
_armed: list[Any] = []  # the callback, its handle, libc: alive as long as the process
_handle = ctypes.c_char(b"h")  # any unique address serves as the handle


def arm_master_exit(log: Log) -> None:
    """In the master: run reap_recorded when uWSGI's master calls exit()."""
    if _armed or not _table:
        return
    try:
        libc = ctypes.CDLL(None)
        register = libc.__cxa_atexit
        register.argtypes = [_EXIT_HANDLER, ctypes.c_void_p, ctypes.c_void_p]
        finalize = libc.__cxa_finalize
        finalize.argtypes = [ctypes.c_void_p]

        def at_master_exit(_: Any) -> None:
            if _master != [os.getpid()]:  # a child disarming it
                return
            try:
                reap_recorded(log)
            except Exception:
                log.exception("forkhooks: master: ending dead children's backends failed")

        callback = _EXIT_HANDLER(at_master_exit)
        if register(callback, None, ctypes.addressof(_handle)) != 0:
            raise OSError("__cxa_atexit failed")
        _armed.extend([callback, finalize])
        # A master that finalizes Python before its C exit (pyuwsgi.run() returning) runs it while Python lives.
        atexit.register(_run_now)
    except Exception as exc:
        log.warning("forkhooks: cannot hook uWSGI's master exit (%s); a stop leaves busy workers' queries running", exc)


def disarm_in_child() -> None:
    """In a child: drop the master's exit handler (run it now, as a no-op) before anything else can exit."""
    if _master != [os.getpid()]:
        _run_now()


def _run_now() -> None:
    """Run the exit handler now and unregister it (glibc's __cxa_finalize for our handle)."""
    if len(_armed) == 2:
        finalize = _armed.pop()
        finalize(ctypes.addressof(_handle))
