"""uWSGI's options as forkhooks reads them: pure functions of ``uwsgi.opt``, so they also run outside uWSGI.

uwsgi_config.py calls them with the running uWSGI's options; the unit tests with options of their own.
"""

from __future__ import annotations

import signal
from collections.abc import Mapping
from typing import Any

from . import stopsignals

_OFF = {b"0", b"false", b"no", b"off", "0", "false", "no", "off"}

# Signals uWSGI itself uses in a worker: forkhooks never takes one of them over.
UWSGI_SIGNALS = set(stopsignals.UWSGI) | {
    signal.SIGALRM,
    signal.SIGPIPE,
    signal.SIGKILL,
    signal.SIGSTOP,
    signal.SIGCHLD,
}


def flag(options: Mapping[str, Any], name: str) -> bool:
    """A uWSGI flag: True from the command line, b"true" and the like from an ini file."""
    value = options.get(name)
    if isinstance(value, list):  # an option given more than once
        value = value[-1]
    return value is not None and value not in _OFF


def values(options: Mapping[str, Any], name: str) -> list[str]:
    """Every value given for option `name`, as text (an option given more than once is a list)."""
    value = options.get(name)
    if value is None or value is True:
        return []
    given = value if isinstance(value, list) else [value]
    return [v.decode() if isinstance(v, bytes) else str(v) for v in given if v is not True]


def harakiri_signal(options: Mapping[str, Any]) -> int | None:
    """The graceful harakiri signal, when it is one forkhooks can handle (not one uWSGI uses in a worker)."""
    if not values(options, "harakiri-graceful-timeout"):
        return None
    try:
        signum = int((values(options, "harakiri-graceful-signal") or ["0"])[0])
    except ValueError:
        return None
    return signum if 0 < signum < signal.NSIG and signum not in UWSGI_SIGNALS else None
