"""The uWSGI adapter, public as ``forkhooks.uwsgi`` (importing it installs the hooks)."""

from __future__ import annotations

import builtins
import dis
import functools
import os
import signal
import sys
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
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
from . import uwsgi_reap as _reap
from . import uwsgi_signals as _signals
from .lifecycle import child_started, master_ready

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
    _reap.disarm_in_child()  # the master's exit handler must never run here
    _stop_watching_imports()  # a child pays nothing per import
    worker = uwsgi.worker_id() > 0  # mules and spoolers are forked too, but serve no requests
    with stop_signals_blocked():  # a tracked pool reopens here: its threads must not take a stop signal either
        child_started(log=log, who="worker" if worker else "child")
    _hook_atexit()  # the app may have replaced uwsgi.atexit while it loaded
    if not worker:
        _signals.mask_now(log)  # a mule's or spooler's handlers are in place before this hook
        _reap.child_started(0, _mule_id(), log, who="child")
    elif not _lazy():  # a lazy-apps worker does this once its app has loaded (app_loaded)
        _mask_stop_handlers()
        _reap.child_started(uwsgi.worker_id(), 0, log)
    if worker:
        _handle_harakiri()
        _start_pools()


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
    # The process is exiting: stop signals stay blocked for good. One that arrives now (a master's
    # follow-up to a group signal) would re-enter exit() halfway through closing, or, delivered
    # after it, run a handler in the middle of the exit.
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    report = _core.close(log=log, who="worker" if uwsgi.worker_id() > 0 else "child")
    if not report.failures:
        _reap.clean_exit()  # nothing of ours outlives this process: its successor need not look


def _hook_atexit() -> None:
    global _previous_atexit
    current = getattr(uwsgi, "atexit", None)
    if current is at_exit:
        return
    _previous_atexit = current
    uwsgi.atexit = at_exit


def _mask_stop_handlers() -> None:
    """In a worker: make uWSGI's stop handlers, once it sets them, block each other's signals."""
    if threads_enabled():  # without threads the waiting thread would never run; nothing to mask then
        _signals.mask_when_installed(log, stop_signals_blocked)


def _lazy() -> bool:
    """Whether each worker loads the app itself (lazy-apps, or the older lazy)."""
    return _opt("lazy-apps") or _opt("lazy")


def _mule_id() -> int:
    try:
        return int(uwsgi.mule_id())
    except Exception:  # not a mule, or a uWSGI without mule_id()
        return 0


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


# The signals uWSGI stops or reloads a worker with; its handlers call exit(),
# which runs uwsgi.atexit in whichever thread the kernel picked.
STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2}


@contextmanager
def stop_signals_blocked() -> Iterator[None]:
    """Block uWSGI's stop signals in this thread; threads started meanwhile keep them blocked for good.

    A signal sent to the process (or its whole group, as systemd and Ctrl-C do)
    may otherwise land on a psycopg_pool thread, which then runs exit() and
    uwsgi.atexit, and closes the pool from inside the pool.
    """
    blocked = STOP_SIGNALS | ({_harakiri} if _harakiri is not None else set())
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, blocked)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


# --- Harakiri: uWSGI's only Python point is the signal it sends a stuck worker first. ---
#
# Plain harakiri is a SIGKILL, and a busy worker skips uwsgi.atexit: nothing can run there. With
# `harakiri-graceful-timeout`, uWSGI first sends `harakiri-graceful-signal` (SIGTERM by default,
# which uWSGI handles itself). Set to a signal uWSGI leaves alone in workers, forkhooks handles it:
# the stuck request's query is cancelled, the request fails at once, the worker lives on.

_harakiri: int | None = None  # the graceful harakiri signal forkhooks handles in this worker


def _harakiri_signal() -> int | None:
    """The graceful harakiri signal, when it is one forkhooks can handle (not one uWSGI uses in a worker)."""
    if not _values("harakiri-graceful-timeout"):
        return None
    try:
        signum = int((_values("harakiri-graceful-signal") or ["0"])[0])
    except ValueError:
        return None
    uwsgis = STOP_SIGNALS | {signal.SIGALRM, signal.SIGPIPE, signal.SIGKILL, signal.SIGSTOP, signal.SIGCHLD}
    return signum if 0 < signum < signal.NSIG and signum not in uwsgis else None


def _cancel_on_harakiri(signum: int, frame: Any) -> None:
    """uWSGI is about to kill this stuck worker: cancel its running queries, so the request fails now."""
    cancelled = 0
    for wrapper in _django.wrappers():
        conn = getattr(wrapper, "connection", None)
        if conn is None:
            continue
        try:
            cancelled += _core.steps._cancel_running_query(wrapper, conn, _core.settings.close_timeout(log))
        except Exception:
            log.exception("forkhooks: cancelling the query of Django connection %r failed", wrapper.alias)
    log.warning("forkhooks: worker %d: harakiri: cancelled %d running query(ies)", os.getpid(), cancelled)


def _handle_harakiri() -> None:
    global _harakiri
    _harakiri = _harakiri_signal()
    if _harakiri is not None:
        signal.signal(_harakiri, _cancel_on_harakiri)


def _start_pools() -> None:
    """In a worker: start the pools' threads with stop signals blocked, then warm them with signals unblocked."""
    if not threads_enabled():  # without threads, opening a pool waits forever
        return
    with stop_signals_blocked():  # only while the threads are created: they keep the mask, this thread does not
        for alias in _django.pooled_aliases():
            try:
                pool = _django.pool_of(alias)
                if pool is not None:
                    pool.open(wait=False)
            except Exception:
                log.exception("forkhooks: opening pool %r failed; the worker serves and retries on use", alias)
    if _core.settings.warm_enabled(log):
        _core.warm(log=log, who="worker")  # the pools are open: this waits for min_size
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
        with stop_signals_blocked():
            return pool.open(*args, **kwargs)

    pool.open = functools.update_wrapper(open_once, type(pool).open)


# --- The master: close after the app loaded, before the first fork. ---
#
# uWSGI loads the app in the master, then forks everything (workers, spooler,
# mules, cheaper and reload respawns) from C, without the GIL: a psycopg_pool
# thread of the master holding the GIL at that moment leaves the child waiting
# for it forever. uWSGI has no Python callback between loading the app and
# forking, but it imports `uwsgi` from C (PyImport_ImportModule, which calls
# builtins.__import__) right after its loaders ran. Watching that import gives
# the master its point to close.

_real_import = builtins.__import__
_watching = False
_loaded_in: int | None = None  # the pid that loaded the app
_app_modules: list[str] = []
_mount_modules: list[str] = []
_file_mounts: list[str] = []


def _values(name: str) -> list[str]:
    value = uwsgi.opt.get(name)
    if value is None or value is True:
        return []
    values = value if isinstance(value, list) else [value]
    return [v.decode() if isinstance(v, bytes) else str(v) for v in values if v is not True]


def _is_file(target: str) -> bool:
    return target.endswith((".py", ".wsgi"))


def _read_app_config() -> None:
    """The modules uWSGI will import as apps (module=, wsgi=, mount=), from its options."""
    _app_modules[:] = [m.partition(":")[0] for name in ("module", "wsgi") for m in _values(name) if not _is_file(m)]
    for mount in _values("mount"):
        target = mount.partition("=")[2]
        if _is_file(target):
            _file_mounts.append(target)
        elif ":" in target:
            _mount_modules.append(target.partition(":")[0])


def _from_c() -> bool:
    """Whether the running __import__ was called by uWSGI's C code, not by an import statement."""
    try:
        caller = sys._getframe(2)  # past ours and _watch_import's
    except ValueError:  # the uwsgi binary: no Python frame at all
        return True
    # pyuwsgi: the frame that called pyuwsgi.run() sits at a call, not at an import.
    code = caller.f_code.co_code
    return not (0 <= caller.f_lasti < len(code) and dis.opname[code[caller.f_lasti]] == "IMPORT_NAME")


def _watch_import(name: str, globals: Any = None, locals: Any = None, fromlist: Any = (), level: int = 0) -> Any:
    module = _real_import(name, globals, locals, fromlist, level)
    if name == "uwsgi" and _watching and _from_c():
        _maybe_app_loaded()
    return module


def _maybe_app_loaded() -> None:
    # uWSGI imports `uwsgi` from C before each module it loads, and once after
    # all its loaders: the app is loaded when every module it names is imported.
    # The master acts on each such import until it forks (the last one wins:
    # a `module:factory()` callable runs after its module's import).
    global _loaded_in
    if _loaded_in is not None and _loaded_in != os.getpid():
        _stop_watching_imports()  # a child of the process that loaded the app: post_fork() takes over
        return
    if not all(_imported(m) for m in _app_modules):
        return
    try:
        for module in _mount_modules:  # mounts load after the last C import: load them now (uWSGI then reuses them)
            __import__(module)
    except Exception:
        log.exception("forkhooks: importing a mounted app failed; uWSGI will report it too")
        _unblock_after_load()
        return
    first = _loaded_in is None
    _loaded_in = os.getpid()
    try:
        if uwsgi.worker_id() > 0:  # lazy-apps: this worker loaded the app itself, and serves next
            _stop_watching_imports()
            app_loaded()
        elif first:
            app_loaded()
        elif _still_open():
            _core.close(log=log, who="master")
    except SystemExit:
        raise  # a pool setting that cannot work: uWSGI must not start
    except Exception:
        log.exception("forkhooks: closing after the app loaded failed; continuing")


def _imported(name: str) -> bool:
    """Whether module `name` has finished importing (one still executing is in sys.modules already)."""
    module = sys.modules.get(name)
    return module is not None and not getattr(getattr(module, "__spec__", None), "_initializing", False)


def _still_open() -> bool:
    """Whether the master opened anything again since it closed (a factory callable, a mount)."""
    if any(pools for pools in _django.pool_dicts()):
        return True
    return any(w.connection is not None for w in _django.current_thread_wrappers())


def _stop_watching_imports() -> None:
    global _watching
    _watching = False
    if builtins.__import__ is _watch_import:  # another wrapper on top of ours keeps ours, now a pass-through
        builtins.__import__ = _real_import


def _watch_imports() -> None:
    global _watching, _real_import
    if _watching:
        return
    _real_import = builtins.__import__
    _watching = True
    builtins.__import__ = _watch_import


def app_loaded() -> None:
    """uWSGI has loaded the app: the master closes what it opened; a lazy-apps worker hooks atexit and warms."""
    if uwsgi.worker_id() > 0:  # lazy-apps: this worker loaded the app itself
        _hook_atexit()  # the app may have replaced uwsgi.atexit while it loaded
        _mask_stop_handlers()  # uWSGI sets the worker's handlers next
        _unblock_after_load()
        _reap.child_started(uwsgi.worker_id(), 0, log)
        _handle_harakiri()
        _start_pools()
        return
    if _file_mounts:
        log.warning(
            "forkhooks: the master cannot close what the mounted file(s) %s open while loading (uWSGI runs "
            "them after its last Python call before forking); mount them as module:callable instead",
            ", ".join(_file_mounts),
        )
    workers = int(getattr(uwsgi, "numproc", 0) or (_values("processes") or ["1"])[0])
    threads = int((_values("threads") or ["1"])[0])
    master_ready(log=log, workers=workers, threads=threads)


_loading_mask: list[Any] = []  # a lazy-apps worker's own mask while its app loads


def _unblock_after_load() -> None:
    """A lazy-apps worker's app has loaded: its main thread takes stop signals again (its threads never do)."""
    if _loading_mask:
        signal.pthread_sigmask(signal.SIG_SETMASK, _loading_mask.pop())


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
    _read_app_config()
    _watch_imports()
    if uwsgi.worker_id() > 0 and _lazy() and _app_modules and not all(_imported(m) for m in _app_modules):
        # lazy-apps: this worker loads the app next, and a query while it loads starts the pool's threads.
        # They must not take a stop signal (uWSGI's exit would run in a pool thread, and with the main
        # thread taking the other signal, two threads would run exit() at once): block until app_loaded.
        _loading_mask.append(signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS))
    elif uwsgi.worker_id() == 0 and _opt("master"):  # the master, before it forks anything
        _reap.create(log)
        _reap.arm_master_exit(log)


_setup()
