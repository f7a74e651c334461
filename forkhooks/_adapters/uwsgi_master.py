"""The uWSGI master: close after the app loaded, before the first fork.

uWSGI loads the app in the master, then forks everything (workers, spooler,
mules, cheaper and reload respawns) from C, without the GIL: a psycopg_pool
thread of the master holding the GIL at that moment leaves the child waiting
for it forever (uWSGI #2387). uWSGI has no Python callback between loading the
app and forking, but it imports `uwsgi` from C (PyImport_ImportModule, which
calls builtins.__import__) right after its loaders ran. Watching that import
gives the master its point to close.
"""

from __future__ import annotations

import builtins
import dis
import os
import sys
from collections.abc import Callable
from typing import Any

import uwsgi

from .. import _core
from .._core import djangodb as _django
from .._tools.appname import Role
from .lifecycle import master_ready
from .uwsgi_config import is_file, log, values

_real_import = builtins.__import__
_watching = False
_hooks: dict[str, Callable[[], None]] = {}  # what runs once the app has loaded, or failed to
_loaded_in: int | None = None  # the pid that loaded the app
app_modules: list[str] = []
_mount_modules: list[str] = []
_file_mounts: list[str] = []


def read_app_config() -> None:
    """The modules uWSGI will import as apps (module=, wsgi=, mount=), from its options."""
    app_modules[:] = [m.partition(":")[0] for name in ("module", "wsgi") for m in values(name) if not is_file(m)]
    for mount in values("mount"):
        target = mount.partition("=")[2]
        if is_file(target):
            _file_mounts.append(target)
        elif ":" in target:
            _mount_modules.append(target.partition(":")[0])


def watch_imports(loaded: Callable[[], None], failed: Callable[[], None]) -> None:
    """In the process that loads the app, call `loaded` once uWSGI has loaded it, `failed` if a mount failed."""
    global _watching, _real_import
    _hooks.update(loaded=loaded, failed=failed)
    if _watching:
        return
    _real_import = builtins.__import__
    _watching = True
    builtins.__import__ = _watch_import


def stop_watching_imports() -> None:
    """Take the import wrapper off: a child pays nothing per import."""
    global _watching
    _watching = False
    if builtins.__import__ is _watch_import:  # another wrapper on top of ours keeps ours, now a pass-through
        builtins.__import__ = _real_import


def imported(name: str) -> bool:
    """Whether module `name` has finished importing (one still executing is in sys.modules already)."""
    module = sys.modules.get(name)
    return module is not None and not getattr(getattr(module, "__spec__", None), "_initializing", False)


def app_loaded() -> None:
    """The master has loaded the app: close what it opened, name and budget its connections."""
    if _file_mounts:
        log.warning(
            "forkhooks: the master cannot close what the mounted file(s) %s open while loading (uWSGI runs "
            "them after its last Python call before forking); mount them as module:callable instead",
            ", ".join(_file_mounts),
        )
    workers = int(getattr(uwsgi, "numproc", 0) or (values("processes") or ["1"])[0])
    threads = int((values("threads") or ["1"])[0])
    master_ready(log=log, workers=workers, threads=threads)


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
        stop_watching_imports()  # a child of the process that loaded the app: post_fork() takes over
        return
    if not all(imported(m) for m in app_modules):
        return
    try:
        for module in _mount_modules:  # mounts load after the last C import: load them now (uWSGI then reuses them)
            __import__(module)
    except Exception:
        log.exception("forkhooks: importing a mounted app failed; uWSGI will report it too")
        _hooks["failed"]()
        return
    first = _loaded_in is None
    _loaded_in = os.getpid()
    try:
        if uwsgi.worker_id() > 0:  # lazy-apps: this worker loaded the app itself, and serves next
            stop_watching_imports()
            _hooks["loaded"]()
        elif first:
            _hooks["loaded"]()
        elif _still_open():
            _core.close(log=log, who=Role.MASTER)
    except SystemExit:
        raise  # a pool setting that cannot work: uWSGI must not start
    except Exception:
        log.exception("forkhooks: closing after the app loaded failed; continuing")


def _still_open() -> bool:
    """Whether the master opened anything again since it closed (a factory callable, a mount)."""
    if any(pools for pools in _django.pool_dicts()):
        return True
    return any(w.connection is not None for w in _django.current_thread_wrappers())
