"""The uWSGI adapter, public as ``forkhooks.uwsgi``: importing it installs the hooks.

One module per concern: uwsgi_config (options, log), uwsgi_master (close after
the app loaded), uwsgi_worker (discard, warm and close in forked processes),
uwsgi_harakiri, uwsgi_signals (uWSGI's C stop handlers), uwsgi_reap (the
backends of a child that died without closing), stopsignals (the signal sets).
"""

from __future__ import annotations

try:
    import uwsgi
except ImportError:
    raise ImportError(
        "forkhooks.uwsgi only works inside a uWSGI process: load it from your uWSGI config "
        "(`import = forkhooks.uwsgi`) or from the app uWSGI loads; this process is not running under uWSGI"
    ) from None

from . import uwsgi_master as _master
from . import uwsgi_reap as _reap
from . import uwsgi_worker as _worker
from .uwsgi_config import lazy, log, opt, threads_enabled
from .uwsgi_worker import at_exit

__all__ = ["post_fork", "at_exit"]


def post_fork() -> None:
    """In a process uWSGI just forked: discard inherited connections and pools, then warm a worker's pools."""
    _master.stop_watching_imports()  # a child pays nothing per import
    _worker.post_fork()


post_fork._forkhooks = True  # type: ignore[attr-defined]  # recognised even from a second copy of this module


def app_loaded() -> None:
    """uWSGI has loaded the app: the master closes what it opened; a lazy-apps worker hooks atexit and warms."""
    if uwsgi.worker_id() > 0:  # lazy-apps: this worker loaded the app itself
        _worker.app_loaded()
    else:
        _master.app_loaded()


def _setup() -> None:
    if not threads_enabled():
        log.warning(
            "forkhooks: uWSGI runs without Python threads: psycopg_pool's background threads (Django's "
            "connection pool) stall while a worker waits for requests, so requests can hang until the "
            "pool timeout; forkhooks does not warm pools. Add `enable-threads = true` to your uWSGI config "
            "(--enable-threads)."
        )
    _worker.hook_post_fork(post_fork)
    _worker.hook_atexit()
    _master.read_app_config()
    _master.watch_imports(loaded=app_loaded, failed=_worker.unblock_after_load)
    if uwsgi.worker_id() > 0 and lazy() and _master.app_modules and not all(map(_master.imported, _master.app_modules)):
        # lazy-apps: this worker loads the app next, and a query while it loads starts the pool's threads.
        # They must not take a stop signal (uWSGI's exit would run in a pool thread, and with the main
        # thread taking the other signal, two threads would run exit() at once): block until app_loaded.
        _worker.block_while_loading()
    elif uwsgi.worker_id() == 0 and opt("master"):  # the master, before it forks anything
        _reap.create(log)
        _reap.arm_master_exit(log)


_setup()
