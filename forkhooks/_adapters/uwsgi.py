"""The uWSGI adapter, public as ``forkhooks.uwsgi`` (importing it installs the hooks)."""

from __future__ import annotations

import os
import sys
import threading
import traceback
from collections.abc import Callable
from typing import Any

try:
    import uwsgi
except ImportError:
    raise ImportError(
        "forkhooks.uwsgi only works inside a uWSGI process: load it from your uWSGI config "
        "(`import = forkhooks.uwsgi`) or from the app uWSGI loads; this process is not running under uWSGI"
    ) from None

from .. import _core
from .._core import djangodb as _django
from .lifecycle import child_started

__all__ = ["post_fork", "at_exit"]

_OFF = {b"0", b"false", b"no", b"off", "0", "false", "no", "off"}


class _Log:
    """forkhooks' lines into uWSGI's log: Python logging is often not configured yet in the master."""

    def info(self, msg: str, *args: Any) -> None:
        uwsgi.log(msg % args if args else msg)

    def warning(self, msg: str, *args: Any) -> None:
        uwsgi.log("WARNING " + (msg % args if args else msg))

    def exception(self, msg: str, *args: Any) -> None:
        uwsgi.log((msg % args if args else msg) + "\n" + traceback.format_exc().rstrip())


log = _Log()


def _opt(name: str) -> bool:
    """A uWSGI flag: True from the command line, b"true" and the like from an ini file."""
    value = uwsgi.opt.get(name)
    if isinstance(value, list):  # an option given more than once
        value = value[-1]
    return value is not None and value not in _OFF


def threads_enabled() -> bool:
    """Whether uWSGI runs Python threads (psycopg_pool's workers need them)."""
    has = getattr(uwsgi, "has_threads", None)  # what uWSGI decided; always on since 2.0.27
    if has is not None:
        return bool(has)
    return _opt("enable-threads") or int(uwsgi.opt.get("threads", 1) or 1) > 1


def post_fork() -> None:
    """In a process uWSGI just forked: discard inherited connections and pools, then warm a worker's pools."""
    worker = uwsgi.worker_id() > 0  # mules and spoolers are forked too, but serve no requests
    # A fork from C leaves the master's other threads listed here (no
    # PyOS_AfterFork_Child). One of them holding the GIL at that moment
    # leaves the child waiting for it forever; uWSGI only prevents that with
    # py-call-uwsgi-fork-hooks.
    stale = threading.active_count() - 1
    if stale > 0 and not _opt("py-call-uwsgi-fork-hooks"):
        log.warning(
            "forkhooks: uWSGI forked this process while %d other Python thread(s) ran in the master "
            "(psycopg_pool's, opened while the app loaded); uWSGI then forks without taking the GIL and "
            "a worker can hang at start. Set `py-call-uwsgi-fork-hooks = true`: the master then also "
            "closes its connections before each fork.",
            stale,
        )
    child_started(log=log, who="worker" if worker else "child")
    _hook_atexit()  # the app may have replaced uwsgi.atexit while it loaded
    if worker and threads_enabled():  # without threads, opening a pool waits forever
        _core.warm(log=log, who="worker")


post_fork._forkhooks = True  # type: ignore[attr-defined]  # recognised even from a second copy of this module


_previous_atexit: Callable[[], Any] | None = None
_exited = False


def at_exit() -> None:
    """A uWSGI worker is exiting: run the atexit hook that was there before, then close connections and pools."""
    global _exited
    if _exited:  # a user hook that calls the one it replaced (us) must not loop
        return
    _exited = True
    if _previous_atexit is not None:
        try:
            _previous_atexit()
        except Exception:
            log.exception("forkhooks: the previous uwsgi.atexit hook failed; closing anyway")
    _core.close(log=log, who="worker" if uwsgi.worker_id() > 0 else "child")


def _hook_atexit() -> None:
    global _previous_atexit
    current = getattr(uwsgi, "atexit", None)
    if current is at_exit:
        return
    _previous_atexit = current
    uwsgi.atexit = at_exit


def _ours(hook: Any) -> bool:
    return bool(getattr(hook, "_forkhooks", False))


def _hook_post_fork() -> None:
    previous = getattr(uwsgi, "post_fork_hook", None)
    # Importing uwsgidecorators (once) sets uwsgi.post_fork_hook to the runner
    # of its chain: doing it here means an app importing it later does not
    # replace us. It refuses to load without a master.
    first = "uwsgidecorators" not in sys.modules
    kept = {name: getattr(uwsgi, name, None) for name in ("spooler", "mule_msg_hook")} if first else {}
    try:
        import uwsgidecorators
    except Exception:
        _chain_by_hand(previous)
        return
    for name, value in kept.items():
        if value is not None:  # a hook set by hand before us stays
            setattr(uwsgi, name, value)
    chain = uwsgidecorators.postfork_chain
    runner = uwsgidecorators.postfork_chain_hook
    if previous is not None and previous is not runner and previous not in chain:
        chain.append(previous)
    if not any(_ours(f) for f in chain):
        chain.insert(0, post_fork)  # first: nothing may use an inherited connection
    uwsgi.post_fork_hook = runner


def _chain_by_hand(previous: Callable[[], Any] | None) -> None:
    if _ours(previous):
        return

    def chained() -> None:
        post_fork()
        if previous is not None:
            previous()

    chained._forkhooks = True  # type: ignore[attr-defined]
    uwsgi.post_fork_hook = chained


def _close_in_master() -> None:
    if os.getpid() == uwsgi.masterpid():
        _core.close(log=log, who="master")


def _setup() -> None:
    if not threads_enabled():
        log.warning(
            "forkhooks: uWSGI runs without Python threads: psycopg_pool's background threads (Django's "
            "connection pool) stall while a worker waits for requests, so requests can hang until the "
            "pool timeout; forkhooks does not warm pools. Add `enable-threads = true` to your uWSGI config "
            "(--enable-threads)."
        )
    _hook_post_fork()
    _hook_atexit()
    if _opt("py-call-uwsgi-fork-hooks"):
        # Only with this option does uWSGI run at-fork callbacks in the master before forking.
        os.register_at_fork(before=_close_in_master)
    if uwsgi.worker_id() > 0 and threads_enabled() and _django.pooled_aliases():
        # Imported in a worker after its app loaded (lazy-apps, from wsgi.py):
        # nothing was inherited, and no post-fork hook will run here.
        _core.warm(log=log, who="worker")


_setup()
