"""gunicorn server hooks: ``from forkhooks.gunicorn import *`` or ``-c python:forkhooks.gunicorn``.

The master closes what it opened (so it holds no server connection and its
children inherit none), each child discards what it inherited anyway, workers
warm their pools after loading the app and close them on the way out.

To call these from hooks of your own, pass gunicorn's positional arguments and
any option by keyword: gunicorn checks a hook's arity, so options are
keyword-only and your hook keeps the signature gunicorn expects::

    import forkhooks.gunicorn as fh

    def post_fork(server, worker):
        fh.post_fork(server, worker)
        ...  # your own work
"""

from __future__ import annotations

from typing import Any

from . import _core

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


def _sizes(cfg: Any) -> dict[str, int]:
    """Workers and threads from gunicorn's config, for the connection budget."""
    sizes = {}
    for key, setting in (
        ("workers", "workers"),
        ("threads", "threads"),
        ("dirty_workers", "dirty_workers"),
        ("dirty_threads", "dirty_threads"),
    ):
        value = getattr(cfg, setting, None)
        if isinstance(value, int):
            sizes[key] = value
    worker_class = str(getattr(cfg, "worker_class_str", ""))
    if "gthread" not in worker_class and "ThreadWorker" not in worker_class:
        sizes["threads"] = 1  # only gthread runs requests on several threads
    return sizes


def _log(obj: Any) -> Any:
    """gunicorn's logger from an arbiter or a worker; forkhooks' own otherwise."""
    log = getattr(obj, "log", None)
    return log if all(hasattr(log, m) for m in ("info", "warning", "exception")) else None


def when_ready(server: Any, *, timeout: float | None = None) -> None:
    """Master is ready: close its connections and pools before any fork, name its own, check the budget."""
    _core.prepare_master(log=_log(server), timeout=timeout, **_sizes(getattr(server, "cfg", None)))


def pre_fork(server: Any, worker: Any, *, timeout: float | None = None) -> None:
    """Master is about to fork: close anything it opened since (reload, user hooks)."""
    _core.close(log=_log(server), who="master", timeout=timeout)


def post_fork(server: Any, worker: Any) -> None:
    """In the new worker: discard every inherited connection and pool, sending nothing."""
    _core.discard(log=_log(server), who="worker")


def post_worker_init(worker: Any, *, timeout: float | None = None) -> None:
    """Worker loaded the app: open its pools to min_size (FORKHOOKS_WARM=0 turns this off)."""
    _core.warm(log=_log(worker), who="worker", timeout=timeout)


def worker_exit(server: Any, worker: Any, *, timeout: float | None = None) -> None:
    """Worker is exiting: close its connections and pools so backends free at once."""
    _core.close(log=_log(server), who="worker", timeout=timeout)


def worker_abort(worker: Any, *, timeout: float | None = None) -> None:
    """Worker timed out (SIGABRT): close its pools before it dies."""
    _core.close(log=_log(worker), who="worker", timeout=timeout)


def worker_int(worker: Any, *, timeout: float | None = None) -> None:
    """Worker got SIGINT/SIGQUIT: close its pools before it exits."""
    _core.close(log=_log(worker), who="worker", timeout=timeout)


def on_dirty_starting(arbiter: Any) -> None:
    """Dirty arbiter (forked from the master before when_ready): discard what it inherited."""
    _core.discard(log=_log(arbiter), who="dirty arbiter")
    # gunicorn calls dirty_post_fork in the arbiter, not the child; an at-fork
    # callback discards in each dirty worker at the exact moment it is forked.
    _core.install()


def dirty_post_fork(arbiter: Any, worker: Any, *, timeout: float | None = None) -> None:
    """In the dirty arbiter after a fork: close anything it opened, so the next child inherits none."""
    _core.close(log=_log(arbiter), who="dirty arbiter", timeout=timeout)


def dirty_worker_init(worker: Any, *, timeout: float | None = None) -> None:
    """Dirty worker loaded its apps: discard inherited connections (if not done at fork), warm pools."""
    _core.discard(log=_log(worker), who="dirty worker")
    _core.warm(log=_log(worker), who="dirty worker", timeout=timeout)


def dirty_worker_exit(arbiter: Any, worker: Any, *, timeout: float | None = None) -> None:
    """gunicorn calls this in the dirty arbiter once a dirty worker is gone: close the arbiter's own."""
    _core.close(log=_log(arbiter), who="dirty arbiter", timeout=timeout)
