"""What the uWSGI adapter reads of the running uWSGI: its options (uwsgi_options), and its log for forkhooks' lines."""

from __future__ import annotations

import traceback
from typing import Any

import uwsgi

from . import uwsgi_options as _options


class _Log:
    """forkhooks' lines into uWSGI's log: Python logging is often not configured yet in the master."""

    def info(self, msg: str, *args: Any) -> None:
        uwsgi.log(msg % args if args else msg)

    def warning(self, msg: str, *args: Any) -> None:
        uwsgi.log("WARNING " + (msg % args if args else msg))

    def exception(self, msg: str, *args: Any) -> None:
        uwsgi.log((msg % args if args else msg) + "\n" + traceback.format_exc().rstrip())


log = _Log()


def opt(name: str) -> bool:
    """A uWSGI flag: True from the command line, b"true" and the like from an ini file."""
    return _options.flag(uwsgi.opt, name)


def values(name: str) -> list[str]:
    """Every value given for option `name`, as text (an option given more than once is a list)."""
    return _options.values(uwsgi.opt, name)


def threads_enabled() -> bool:
    """Whether uWSGI runs Python threads (psycopg_pool's workers need them)."""
    has = getattr(uwsgi, "has_threads", None)  # what uWSGI decided; always on since 2.0.27
    if has is not None:
        return bool(has)
    return opt("enable-threads") or int(uwsgi.opt.get("threads", 1) or 1) > 1


def lazy() -> bool:
    """Whether each worker loads the app itself (lazy-apps, or the older lazy)."""
    return opt("lazy-apps") or opt("lazy")


def mule_id() -> int:
    """This mule's id; 0 in any other process."""
    try:
        return int(uwsgi.mule_id())
    except Exception:  # not a mule, or a uWSGI without mule_id()
        return 0


def is_file(target: str) -> bool:
    """Whether an app target names a file (uWSGI runs it) rather than a module (uWSGI imports it)."""
    return target.endswith((".py", ".wsgi"))


def harakiri_signal() -> int | None:
    """The graceful harakiri signal, when it is one forkhooks can handle (not one uWSGI uses in a worker)."""
    return _options.harakiri_signal(uwsgi.opt)
