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

from ._adapters.gunicorn import (
    dirty_post_fork,
    dirty_worker_exit,
    dirty_worker_init,
    on_dirty_starting,
    post_fork,
    post_worker_init,
    pre_fork,
    when_ready,
    worker_abort,
    worker_exit,
    worker_int,
)

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
