"""gunicorn server hooks, public as ``forkhooks.gunicorn``: the master closes, children discard, workers warm.

The master also ends what a dead worker left on the server: a worker killed
mid-query (SIGKILL, the OOM killer, a stop that outlasted --graceful-timeout)
closes nothing, and PostgreSQL runs its query to the end, holding its locks
and a connection slot; gunicorn calls child_exit once it has reaped the
worker, and on_exit before the master exits, when workers it SIGKILLed last
may not be reaped yet.
"""

from __future__ import annotations

import importlib
import mmap
import os
import time
from collections.abc import Callable, Iterable
from typing import Any

from .. import _core
from .._core import Log, Report
from .._core import djangodb as _django
from .._tools.appname import Role
from . import cancel
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
    "child_exit",
    "on_exit",
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
    _core.close(log=_log(server), who=Role.MASTER, timeout=timeout)
    prepare_exit_mark(worker)


def post_fork(server: Any, worker: Any) -> None:
    """In the new worker: discard every inherited connection and pool, sending nothing."""
    child_started(log=_log(server), who=Role.WORKER)


def post_worker_init(worker: Any, *, timeout: float | None = None) -> None:
    """Worker loaded the app: per-greenlet connections if gevent patched it, then open its pools to min_size."""
    worker_ready(log=_log(worker), who=Role.WORKER, timeout=timeout)
    guard_stop_signals(log=_log(worker), who=Role.WORKER, closed=lambda report: mark_closed(worker, report))


def worker_exit(server: Any, worker: Any, *, timeout: float | None = None) -> None:
    """Worker is exiting: close its connections and pools so backends free at once."""
    mark_closed(worker, close_for_exit(log=_log(server), who=Role.WORKER, timeout=timeout))


def worker_abort(worker: Any, *, timeout: float | None = None) -> None:
    """Worker timed out (SIGABRT): close its pools before it dies."""
    close_for_exit(log=_log(worker), who=Role.WORKER, timeout=timeout)


def worker_int(worker: Any, *, timeout: float | None = None) -> None:
    """Worker got SIGINT/SIGQUIT: close its pools before it exits."""
    close_for_exit(log=_log(worker), who=Role.WORKER, timeout=timeout)


def on_dirty_starting(arbiter: Any) -> None:
    """Dirty arbiter (forked from the master before when_ready): discard what it inherited."""
    child_started(log=_log(arbiter), who=Role.DIRTY_ARBITER)
    # gunicorn calls dirty_post_fork in the arbiter, not the child; an at-fork
    # callback discards in each dirty worker at the exact moment it is forked.
    install()


def dirty_post_fork(arbiter: Any, worker: Any, *, timeout: float | None = None) -> None:
    """In the dirty arbiter after a fork: close anything it opened, so the next child inherits none."""
    _core.close(log=_log(arbiter), who=Role.DIRTY_ARBITER, timeout=timeout)


def dirty_worker_init(worker: Any, *, timeout: float | None = None) -> None:
    """Dirty worker loaded its apps: discard inherited connections (if not done at fork), warm pools."""
    child_started(log=_log(worker), who=Role.DIRTY_WORKER)
    _core.warm(log=_log(worker), who=Role.DIRTY_WORKER, timeout=timeout)


def dirty_worker_exit(arbiter: Any, worker: Any, *, timeout: float | None = None) -> None:
    """In the dirty arbiter once a dirty worker is gone: close the arbiter's own, end the dead worker's backends."""
    _core.close(log=_log(arbiter), who=Role.DIRTY_ARBITER, timeout=timeout)
    end_backends_of_dead([worker], log=_log(arbiter), who=Role.DIRTY_ARBITER, whose=Role.DIRTY_WORKER)


def child_exit(server: Any, worker: Any) -> None:
    """Master reaped a worker: terminate the backends it left (killed mid-query), quiet when there are none."""
    end_backends_of_dead([worker], log=_log(server))


# How long on_exit waits for the workers gunicorn SIGKILLed at the end of its stop to die:
# a SIGKILLed process is gone in milliseconds unless it is stuck in the kernel.
EXIT_WAIT = 3.0


def on_exit(server: Any, *, timeout: float | None = None) -> None:
    """Master is exiting: reap the workers its stop SIGKILLed but did not reap, and end their backends.

    gunicorn's stop SIGKILLs the workers still running after --graceful-timeout and
    then exits (gunicorn 23) or reaps once at once (gunicorn >= 24), before most of
    them are dead: child_exit never runs for those, and their queries would run on.
    """
    log = _log(server) or _core.log
    pending = {w.pid: w for w in list(getattr(server, "WORKERS", {}).values()) if _pid(w)}
    gone = []
    deadline = time.monotonic() + (EXIT_WAIT if timeout is None else timeout)
    try:
        while pending:
            for pid in list(pending):
                try:
                    done, _ = os.waitpid(pid, os.WNOHANG)
                except ChildProcessError:  # reaped already (gunicorn 23 reaps in its SIGCHLD handler)
                    done = pid
                if done:
                    gone.append(pending.pop(pid))
            if not pending or time.monotonic() >= deadline:
                break
            time.sleep(0.02)
    except Exception:
        log.exception("forkhooks: master %d: waiting for its last workers failed; continuing", os.getpid())
    end_backends_of_dead(gone, log=log)
    if pending:
        log.warning(
            "forkhooks: master %d: worker(s) %s still alive %.1fs after the stop; their backends are left as they are",
            os.getpid(),
            ", ".join(map(str, sorted(pending))),
            EXIT_WAIT if timeout is None else timeout,
        )


# Hooks that end dead workers' backends carry this, so a worker class chains them onto a config once.
_REAPS = "_forkhooks_reaps"
child_exit._forkhooks_reaps = True  # type: ignore[attr-defined]
on_exit._forkhooks_reaps = True  # type: ignore[attr-defined]


def chain_master_hooks(cfg: Any, log: Log | None = None) -> None:
    """Make gunicorn's master run forkhooks' child_exit and on_exit after the configured ones, once per config."""
    try:
        for name, ours in (("child_exit", child_exit), ("on_exit", on_exit)):
            theirs = getattr(cfg, name, None)
            if theirs is None or getattr(theirs, _REAPS, False):
                continue
            cfg.set(name, _chained(theirs, ours))
    except Exception:
        (log or _core.log).exception("forkhooks: adding child_exit and on_exit to gunicorn's config failed")


def _chained(theirs: Callable[..., Any], ours: Callable[..., Any]) -> Callable[..., Any]:
    """`theirs` then `ours`, with the arity gunicorn checks: (server, worker) or (server)."""
    if ours is child_exit:

        def both(server: Any, worker: Any) -> None:
            try:
                theirs(server, worker)
            finally:
                ours(server, worker)

    else:

        def both(server: Any) -> None:  # type: ignore[misc]
            try:
                theirs(server)
            finally:
                ours(server)

    setattr(both, _REAPS, True)
    both.__wrapped__ = theirs  # type: ignore[attr-defined]
    return both


# -- a worker that closed everything tells its master so, and the master connects for nothing ------


def prepare_exit_mark(worker: Any) -> None:
    """In the master, before the fork: one shared byte the worker sets once it has closed everything."""
    try:
        if getattr(worker, "_forkhooks_exit_mark", None) is None:
            worker._forkhooks_exit_mark = mmap.mmap(-1, 1)  # anonymous and MAP_SHARED: seen by both sides
    except Exception:  # no mark: the master looks on the server, as it would without one
        pass


def mark_closed(worker: Any, report: Report) -> None:
    """In the worker, after its last close: tell the master nothing is left open, unless a step failed."""
    mark = getattr(worker, "_forkhooks_exit_mark", None)
    if mark and not report.failures:
        try:
            mark[0] = 1
        except Exception:
            pass


def _closed_cleanly(worker: Any) -> bool:
    """In the master: whether the worker marked its close done (then frees the mark)."""
    mark = getattr(worker, "_forkhooks_exit_mark", None)
    if not mark:
        return False
    try:
        return bool(mark[0] == 1)
    except Exception:
        return False
    finally:
        try:
            mark.close()
            worker._forkhooks_exit_mark = False
        except Exception:
            pass


def _pid(worker: Any) -> int | None:
    pid = getattr(worker, "pid", None)
    return pid if isinstance(pid, int) and pid > 0 else None


def end_backends_of_dead(
    workers: Iterable[Any], *, log: Log | None = None, who: str = Role.MASTER, whose: str = Role.WORKER
) -> int:
    """Terminate the backends of reaped workers that did not close them; never raises; how many."""
    log = log or _core.log
    total = 0
    for worker in workers:
        pid = _pid(worker)
        # A user hook calling ours and ours chained by a worker class both run: once is enough.
        if pid is None or getattr(worker, "_forkhooks_reaped", False):
            continue
        try:
            worker._forkhooks_reaped = True
        except Exception:
            pass
        if _closed_cleanly(worker):
            continue
        try:
            if not _databases_known(log, who):
                continue
            n = cancel.end_backends_of(pid, log=log)
        except Exception as exc:  # the server is down or refuses: one line, the master goes on
            log.warning(
                "forkhooks: %s %d could not end the backends of %s %d (%s: %s); continuing",
                who,
                os.getpid(),
                whose,
                pid,
                type(exc).__name__,
                exc,
            )
            continue
        if n:
            log.info(
                "forkhooks: %s %d ended %d backend(s) of %s %d, which died without closing them",
                who,
                os.getpid(),
                n,
                whose,
                pid,
            )
        total += n
    return total


_unknown_said: list[bool] = []


def _databases_known(log: Log, who: str) -> bool:
    """Whether this process knows DATABASES; loads Django's settings (not the app) when the environment names them.

    Without --preload the master never imported the app; DJANGO_SETTINGS_MODULE, when
    set in its environment, is enough to find the servers (no app is loaded).
    """
    if _django.database_settings():
        return True
    if _django.handler() is None and os.environ.get("DJANGO_SETTINGS_MODULE"):
        importlib.import_module("django.db")
        if _django.database_settings():
            return True
    if not _unknown_said:
        _unknown_said.append(True)
        log.warning(
            "forkhooks: %s %d cannot end the backends of workers that die mid-query: it has not loaded "
            "Django's settings (run gunicorn with --preload, or set DJANGO_SETTINGS_MODULE in its environment)",
            who,
            os.getpid(),
        )
    return False
