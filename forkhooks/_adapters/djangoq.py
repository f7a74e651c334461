"""The django-q2 adapter: loaded by forkhooks.django in a process that runs ``qcluster``.

The qcluster process forks the Sentinel; the Sentinel forks the workers, the
monitor and the pusher (multiprocessing's fork context) and a replacement for
each one that dies, times out or is recycled. Then:

- both supervisors, the qcluster process and the Sentinel, close their Django
  connections and pools before each fork (django-q2's own close_all() before
  a spawn hands connections back to a pool that stays open, and the children
  inherit it): no child inherits a backend, and the qcluster process, which
  queries nothing after its start, holds none while it supervises;
- each worker (the at-fork discard ran first) names its connections
  ``<prefix>:django-q2-worker:<pid>@<host>`` and warms its pools at django-q2's
  ``post_spawn``; django-q2 hands the connection back to the pool around each
  task (close_old_connections) and the pools live as long as the worker; a
  worker that returns (recycled, stopped, timed out) closes them, and one sent
  SIGTERM (systemd stopping the service; django-q2 leaves it the default
  action) closes them, cancelling its running query, then dies of it;
- before the Sentinel terminates a worker past its task timeout, it cancels
  that worker's running query (psycopg2 cannot act on the timeout signal
  before its query returns); once it finds a child dead of a signal (the OOM
  killer, ``kill -9``) or gone after a timeout, it ends that child's backends.
"""

from __future__ import annotations

import importlib
import logging
import os
import signal
from collections.abc import Callable
from typing import Any

from .. import _core
from .._tools import appname
from .._tools.appname import Role
from . import cancel as _cancel
from . import forks
from .lifecycle import close_then_die
from .patching import wrap_method

__all__ = ["ROLE"]

# A child of django-q2's logger: its lines go wherever the cluster's go.
log = logging.getLogger("django-q.forkhooks")

ROLE = Role.Q2_WORKER  # a worker names its connections <prefix>:django-q2-worker:<pid>@<host>

# The qcluster process and its Sentinel, once each starts: only their forks close first.
_supervisors: set[int] = set()
# This process is one a supervisor forked (the Sentinel, a worker, the monitor, the pusher).
_child = False
_connected = False


def _before_fork() -> None:
    if os.getpid() in _supervisors:
        _core.close(log=log, who=Role.Q2_SUPERVISOR)


def _after_fork_in_child() -> None:
    global _child
    # Runs after forks.install()'s discard (at-fork callbacks run in the order registered).
    if os.getppid() in _supervisors:
        _child = True
    _supervisors.clear()  # the Sentinel adds itself when it starts


def _supervise(role: str) -> None:
    forks.install()  # Django is set up: watch() sees every wrapper from here on
    _supervisors.add(os.getpid())
    appname.label(role)


def _cluster_start(original: Callable[..., Any]) -> Callable[..., Any]:
    def start(self: Any) -> Any:
        try:
            _supervise("q2-cluster")
        except Exception:
            log.exception("forkhooks: setting up the qcluster process failed; continuing without it")
        return original(self)

    return start


def _sentinel_init(original: Callable[..., Any]) -> Callable[..., Any]:
    def __init__(self: Any, *args: Any, **kwargs: Any) -> Any:
        if _child:
            try:
                _supervise("q2-sentinel")
            except Exception:
                log.exception("forkhooks: setting up the Sentinel failed; continuing without it")
        return original(self, *args, **kwargs)  # starts the cluster and guards it until it stops

    return __init__


def _reincarnate(original: Callable[..., Any]) -> Callable[..., Any]:
    def reincarnate(self: Any, process: Any) -> Any:
        if process is not None and os.getpid() in _supervisors:
            try:
                before_replacing(process)
            except Exception:
                log.exception("forkhooks: ending the queries of process %s failed; continuing", process.pid)
        return original(self, process)

    return reincarnate


def before_replacing(process: Any) -> int:
    """In the Sentinel, about to replace `process`: cancel its query if it is to be killed, end its backends if gone.

    The Sentinel replaces a worker whose task outlived its timeout (and then
    terminates it: SIGTERM, the default action, no Python runs), one that
    died, one recycled, and a monitor or pusher that died.
    """
    pid = int(process.pid)
    timer = getattr(process, "timer", None)  # workers only; the Sentinel holds its lock here
    timed_out = timer is not None and timer.value == 0
    if process.is_alive():
        if not timed_out:
            return 0
        n = _cancel.cancel_queries_of(pid, ROLE, log=log)
        log.info("forkhooks: worker %s past its timeout: cancelled %d running query(ies) before it is killed", pid, n)
        return n
    if process.exitcode == 0 and not timed_out:  # recycled, or returned: it closed its own
        return 0
    n = _cancel.end_backends_of(pid, log=log)
    if n:
        log.info(
            "forkhooks: process %s ended (exit code %s) without closing: ended %d backend(s)", pid, process.exitcode, n
        )
    return n


def _on_post_spawn(sender: Any = None, **kwargs: Any) -> None:
    """A worker starts (django-q2's post_spawn): name its connections, warm its pools, close them when it returns."""
    if not _child:
        return
    try:
        appname.label(ROLE)
    except Exception:
        log.exception("forkhooks: naming this worker's connections failed; continuing")
    try:
        from multiprocessing import util

        # multiprocessing ends a child with os._exit after its finalizers: atexit never runs.
        util.Finalize(None, _close_at_exit, exitpriority=10)
    except Exception:
        log.exception("forkhooks: arranging to close at exit failed; continuing")
    try:
        if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:  # a project that set its own keeps it
            signal.signal(signal.SIGTERM, close_then_die(ROLE, log))
    except Exception:
        log.exception("forkhooks: arranging to close on SIGTERM failed; continuing")
    _core.warm(log=log, who=Role.Q2_WORKER)


def _close_at_exit() -> None:
    # A worker that timed out returns with its connection mid-query under psycopg2: close cancels it.
    _core.close(log=log, who=Role.Q2_WORKER)


def _connect() -> None:
    global _connected
    if _connected:
        return
    _connected = True
    cluster = importlib.import_module("django_q.cluster")
    signals = importlib.import_module("django_q.signals")
    forks.install()  # the discard at fork, registered before ours: it runs first in the child
    os.register_at_fork(before=_before_fork, after_in_child=_after_fork_in_child)
    wrap_method(cluster.Cluster, "start", _cluster_start, log=log)
    wrap_method(cluster.Sentinel, "__init__", _sentinel_init, log=log)
    wrap_method(cluster.Sentinel, "reincarnate", _reincarnate, log=log)
    signals.post_spawn.connect(_on_post_spawn, weak=False, dispatch_uid="forkhooks.djangoq.post_spawn")


_connect()
