"""gunicorn server hooks, public as ``forkhooks.gunicorn``: the master closes, children discard, workers warm."""

from __future__ import annotations

from typing import Any

from .. import _core
from .forks import install
from .lifecycle import child_started, close_for_exit, guard_stop_signals, master_ready, worker_ready

__all__ = [
    "when_ready",
    "pre_fork",
    "post_fork",
    "post_worker_init",
    "worker_exit",
    "worker_abort",
    "worker_int",
    "on_dirty_starting",
    "dirty_post_fork",
    "dirty_worker_init",
    "dirty_worker_exit",
]


def sizes(cfg: Any) -> dict[str, int]:
    """Workers and threads from gunicorn's config, for the connection budget."""
    found = {}
    for key, setting in (
        ("workers", "workers"),
        ("threads", "threads"),
        ("dirty_workers", "dirty_workers"),
        ("dirty_threads", "dirty_threads"),
    ):
        value = getattr(cfg, setting, None)
        if isinstance(value, int):
            found[key] = value
    worker_class = str(getattr(cfg, "worker_class_str", ""))
    if "gevent" in worker_class.lower():  # one greenlet, and without a pool one connection, per client
        found["threads"] = int(getattr(cfg, "worker_connections", 1000))
    elif "gthread" not in worker_class and "ThreadWorker" not in worker_class:
        found["threads"] = 1  # only gthread runs requests on several threads
    return found


def _log(obj: Any) -> Any:
    """gunicorn's logger from an arbiter or a worker; forkhooks' own otherwise."""
    log = getattr(obj, "log", None)
    return log if all(hasattr(log, m) for m in ("info", "warning", "exception")) else None


def when_ready(server: Any, *, timeout: float | None = None) -> None:
    """Master is ready: close its connections and pools before any fork, name its own, check the budget."""
    master_ready(log=_log(server), timeout=timeout, **sizes(getattr(server, "cfg", None)))


def pre_fork(server: Any, worker: Any, *, timeout: float | None = None) -> None:
    """Master is about to fork: close anything it opened since (reload, user hooks)."""
    _core.close(log=_log(server), who="master", timeout=timeout)


def post_fork(server: Any, worker: Any) -> None:
    """In the new worker: discard every inherited connection and pool, sending nothing."""
    child_started(log=_log(server), who="worker")


def post_worker_init(worker: Any, *, timeout: float | None = None) -> None:
    """Worker loaded the app: per-greenlet connections if gevent patched it, then open its pools to min_size."""
    worker_ready(log=_log(worker), who="worker", timeout=timeout)
    guard_stop_signals(log=_log(worker), who="worker")


def worker_exit(server: Any, worker: Any, *, timeout: float | None = None) -> None:
    """Worker is exiting: close its connections and pools so backends free at once."""
    close_for_exit(log=_log(server), who="worker", timeout=timeout)


def worker_abort(worker: Any, *, timeout: float | None = None) -> None:
    """Worker timed out (SIGABRT): close its pools before it dies."""
    close_for_exit(log=_log(worker), who="worker", timeout=timeout)


def worker_int(worker: Any, *, timeout: float | None = None) -> None:
    """Worker got SIGINT/SIGQUIT: close its pools before it exits."""
    close_for_exit(log=_log(worker), who="worker", timeout=timeout)


def on_dirty_starting(arbiter: Any) -> None:
    """Dirty arbiter (forked from the master before when_ready): discard what it inherited."""
    child_started(log=_log(arbiter), who="dirty arbiter")
    # gunicorn calls dirty_post_fork in the arbiter, not the child; an at-fork
    # callback discards in each dirty worker at the exact moment it is forked.
    install()


def dirty_post_fork(arbiter: Any, worker: Any, *, timeout: float | None = None) -> None:
    """In the dirty arbiter after a fork: close anything it opened, so the next child inherits none."""
    _core.close(log=_log(arbiter), who="dirty arbiter", timeout=timeout)


def dirty_worker_init(worker: Any, *, timeout: float | None = None) -> None:
    """Dirty worker loaded its apps: discard inherited connections (if not done at fork), warm pools."""
    child_started(log=_log(worker), who="dirty worker")
    _core.warm(log=_log(worker), who="dirty worker", timeout=timeout)


def dirty_worker_exit(arbiter: Any, worker: Any, *, timeout: float | None = None) -> None:
    """gunicorn calls this in the dirty arbiter once a dirty worker is gone: close the arbiter's own."""
    _core.close(log=_log(arbiter), who="dirty arbiter", timeout=timeout)
