"""The uWSGI adapter in the processes uWSGI forks: workers, mules and the spooler."""

from __future__ import annotations

import functools
import signal
import sys
from collections.abc import Callable
from typing import Any

import uwsgi

from .. import _core
from .._core import djangodb as _django
from .._tools.appname import Role
from . import stopsignals
from . import uwsgi_harakiri as _harakiri
from . import uwsgi_reap as _reap
from . import uwsgi_signals as _signals
from .lifecycle import child_started
from .uwsgi_config import lazy, log, mule_id, threads_enabled


def post_fork() -> None:
    """In a process uWSGI just forked: discard inherited connections and pools, then warm a worker's pools."""
    _reap.disarm_in_child()  # the master's exit handler must never run here
    worker = uwsgi.worker_id() > 0  # mules and spoolers are forked too, but serve no requests
    with stopsignals.blocked():  # a tracked pool reopens here: its threads must not take a stop signal either
        child_started(log=log, who=Role.WORKER if worker else Role.CHILD)
    hook_atexit()  # the app may have replaced uwsgi.atexit while it loaded
    if not worker:
        _signals.mask_now(log)  # a mule's or spooler's handlers are in place before this hook
        _reap.child_started(0, mule_id(), log, who=Role.CHILD)
    elif not lazy():  # a lazy-apps worker does this once its app has loaded (app_loaded)
        _mask_stop_handlers()
        _reap.child_started(uwsgi.worker_id(), 0, log)
    if worker:
        _harakiri.handle()
        _start_pools()


def app_loaded() -> None:
    """A lazy-apps worker has loaded the app itself: hook atexit, mask the stop handlers, warm; it serves next."""
    hook_atexit()  # the app may have replaced uwsgi.atexit while it loaded
    _mask_stop_handlers()  # uWSGI sets the worker's handlers next
    unblock_after_load()
    _reap.child_started(uwsgi.worker_id(), 0, log)
    _harakiri.handle()
    _start_pools()


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
    # The process is exiting: stop signals stay blocked for good. One that arrives now (a master's
    # follow-up to a group signal) would re-enter exit() halfway through closing, or, delivered
    # after it, run a handler in the middle of the exit.
    signal.pthread_sigmask(signal.SIG_BLOCK, stopsignals.UWSGI)
    report = _core.close(log=log, who=Role.WORKER if uwsgi.worker_id() > 0 else Role.CHILD)
    if not report.failures:
        _reap.clean_exit()  # nothing of ours outlives this process: its successor need not look


def hook_atexit() -> None:
    """Put at_exit() on uwsgi.atexit, keeping the hook that was there to run first."""
    global _previous_atexit
    current = getattr(uwsgi, "atexit", None)
    if current is at_exit:
        return
    _previous_atexit = current
    uwsgi.atexit = at_exit


def _ours(hook: Any) -> bool:
    return bool(getattr(hook, "_forkhooks", False))


def hook_post_fork(first_step: Callable[[], None]) -> None:
    """Put `first_step` first on uWSGI's post-fork chain (uwsgidecorators' @postfork chain), keeping the rest."""
    previous = getattr(uwsgi, "post_fork_hook", None)
    # Importing uwsgidecorators (once) sets uwsgi.post_fork_hook to the runner
    # of its chain: doing it here means an app importing it later does not
    # replace us. It refuses to load without a master.
    first = "uwsgidecorators" not in sys.modules
    kept = {name: getattr(uwsgi, name, None) for name in ("spooler", "mule_msg_hook")} if first else {}
    try:
        import uwsgidecorators
    except Exception:
        _chain_by_hand(first_step, previous)
        return
    for name, value in kept.items():
        if value is not None:  # a hook set by hand before us stays
            setattr(uwsgi, name, value)
    chain = uwsgidecorators.postfork_chain
    runner = uwsgidecorators.postfork_chain_hook
    if previous is not None and previous is not runner and previous not in chain:
        chain.append(previous)
    if not any(_ours(f) for f in chain):
        chain.insert(0, first_step)  # first: nothing may use an inherited connection
    uwsgi.post_fork_hook = runner


def _chain_by_hand(first_step: Callable[[], None], previous: Callable[[], Any] | None) -> None:
    if _ours(previous):
        return

    def chained() -> None:
        first_step()
        if previous is not None:
            previous()

    chained._forkhooks = True  # type: ignore[attr-defined]
    uwsgi.post_fork_hook = chained


def _mask_stop_handlers() -> None:
    """In a worker: make uWSGI's stop handlers, once it sets them, block each other's signals."""
    if threads_enabled():  # without threads the waiting thread would never run; nothing to mask then
        _signals.mask_when_installed(log, stopsignals.blocked)


def _start_pools() -> None:
    """In a worker: start the pools' threads with stop signals blocked, then warm them with signals unblocked."""
    if not threads_enabled():  # without threads, opening a pool waits forever
        return
    with stopsignals.blocked():  # only while the threads are created: they keep the mask, this thread does not
        for alias in _django.pooled_aliases():
            try:
                pool = _django.pool_of(alias)
                if pool is not None:
                    pool.open(wait=False)
            except Exception:
                log.exception("forkhooks: opening pool %r failed; the worker serves and retries on use", alias)
    if _core.settings.warm_enabled(log):
        _core.warm(log=log, who=Role.WORKER)  # the pools are open: this waits for min_size
    for alias in _django.pooled_aliases():
        try:
            pool = _django.pool_of(alias)
            if pool is not None and getattr(pool, "closed", False):
                # warm() dropped a pool that reached no server: Django opens a fresh one on the
                # first request, in a request thread whose stop signals are not blocked.
                _open_with_stop_signals_blocked(pool)
        except Exception:
            log.exception("forkhooks: preparing pool %r failed; the worker serves and Django opens it on use", alias)


def _open_with_stop_signals_blocked(pool: Any) -> None:
    """Make the pool's first open() start its threads with stop signals blocked, then get out of the way.

    An instance attribute shadows the class's open() until that first call removes it:
    Django calls pool.open() before every getconn(), and nothing of ours stays on that path.
    """

    def open_once(*args: Any, **kwargs: Any) -> Any:
        pool.__dict__.pop("open", None)
        with stopsignals.blocked():
            return pool.open(*args, **kwargs)

    pool.open = functools.update_wrapper(open_once, type(pool).open)


_loading_mask: list[Any] = []  # a lazy-apps worker's own mask while its app loads


def block_while_loading() -> None:
    """A lazy-apps worker loads the app next: its main thread takes no stop signal until app_loaded()."""
    _loading_mask.append(signal.pthread_sigmask(signal.SIG_BLOCK, stopsignals.UWSGI))


def unblock_after_load() -> None:
    """A lazy-apps worker's app has loaded: its main thread takes stop signals again (its threads never do)."""
    if _loading_mask:
        signal.pthread_sigmask(signal.SIG_SETMASK, _loading_mask.pop())
