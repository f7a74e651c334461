"""uWSGI's options as forkhooks reads them: pure functions of ``uwsgi.opt``, so they run outside uWSGI too.

uwsgi_config.py applies them to the running uWSGI's options; the unit tests to options of their own.
"""

from __future__ import annotations

import signal
from collections.abc import Mapping
from typing import Any

from . import stopsignals

# The signals uWSGI stops or reloads a worker with (their one home: stopsignals.UWSGI).
STOP_SIGNALS = set(stopsignals.UWSGI)

# Signals uWSGI itself uses in a worker (or nobody can handle): never taken for graceful harakiri.
UWSGI_SIGNALS = STOP_SIGNALS | {signal.SIGALRM, signal.SIGPIPE, signal.SIGKILL, signal.SIGSTOP, signal.SIGCHLD}

_OFF = {b"0", b"false", b"no", b"off", "0", "false", "no", "off"}


def flag(opt: Mapping[str, Any], name: str) -> bool:
    """A uWSGI flag: True from the command line, b"true" and the like from an ini file."""
    value = opt.get(name)
    if isinstance(value, list):  # an option given more than once
        value = value[-1]
    return value is not None and value not in _OFF


def values(opt: Mapping[str, Any], name: str) -> list[str]:
    """Every value given for an option, as text (bytes from an ini file decoded, bare flags left out)."""
    value = opt.get(name)
    if value is None or value is True:
        return []
    found = value if isinstance(value, list) else [value]
    return [v.decode() if isinstance(v, bytes) else str(v) for v in found if v is not True]


def harakiri_signal(opt: Mapping[str, Any]) -> int | None:
    """The graceful harakiri signal, when it is one forkhooks can handle (not one uWSGI uses in a worker)."""
    if not values(opt, "harakiri-graceful-timeout"):
        return None
    try:
        signum = int((values(opt, "harakiri-graceful-signal") or ["0"])[0])
    except ValueError:
        return None
    return signum if 0 < signum < signal.NSIG and signum not in UWSGI_SIGNALS else None
