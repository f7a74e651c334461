"""gunicorn worker classes that discard, warm and close in their own lifecycle."""

from __future__ import annotations

from typing import Any

from gunicorn.workers.gthread import ThreadWorker as _ThreadWorker
from gunicorn.workers.sync import SyncWorker as _SyncWorker

from .._tools.appname import Role
from .gunicorn import chain_master_hooks, mark_closed, prepare_exit_mark, sizes
from .lifecycle import child_started, close_for_exit, guard_stop_signals, master_ready, worker_ready


class ForkhooksWorkerMixin:
    """Discard first thing in the child, warm after the app loads, close on the way out.

    In the master, it also makes gunicorn end the backends of workers that die
    without closing them (forkhooks' child_exit and on_exit, after the configured ones).
    """

    log: Any

    @classmethod
    def check_config(cls, cfg: Any, log: Any) -> None:
        # The only worker-class method gunicorn calls in the master, once,
        # after --preload loaded the app and before the first fork: the place
        # for the master to close what it opened, with no config file.
        parent = getattr(super(), "check_config", None)
        if parent is not None:
            parent(cfg, log)
        master_ready(log=log, **sizes(cfg))
        chain_master_hooks(cfg, log)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # gunicorn builds each worker in the master, just before its fork. A reload (SIGHUP)
        # replaces the config without calling check_config again: chain the hooks onto it here.
        super().__init__(*args, **kwargs)
        chain_master_hooks(getattr(self, "cfg", None), getattr(self, "log", None))
        prepare_exit_mark(self)

    def init_process(self) -> None:
        child_started(log=self.log, who=Role.WORKER)
        try:
            super().init_process()  # type: ignore[misc]  # runs the worker until it exits
        finally:
            mark_closed(self, close_for_exit(log=self.log, who=Role.WORKER))

    def load_wsgi(self) -> None:
        super().load_wsgi()  # type: ignore[misc]
        # gevent's worker has patched by now (its init_process patches first): per-greenlet state, then warm.
        worker_ready(log=self.log, who=Role.WORKER)
        guard_stop_signals(log=self.log, who=Role.WORKER, closed=lambda report: mark_closed(self, report))


class SyncWorker(ForkhooksWorkerMixin, _SyncWorker):
    """gunicorn's ``sync`` worker with forkhooks."""


class ThreadWorker(ForkhooksWorkerMixin, _ThreadWorker):
    """gunicorn's ``gthread`` worker with forkhooks."""
