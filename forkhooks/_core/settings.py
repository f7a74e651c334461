"""forkhooks' few settings, read from the environment when a hook runs.

A bad value logs one line through the logger the hook was given (the server's)
and keeps the default. Each bad value is reported once per process, and a
child inherits what its master already reported, so a master's line is not
repeated by every worker.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable
from typing import Any, Protocol

log = logging.getLogger("forkhooks")  # the default logger of every step; servers pass their own

FALSE = {"0", "false", "no", "off"}
TRUE = {"1", "true", "yes", "on"}


class Warns(Protocol):
    """The one method a settings reader needs of a logger."""

    def warning(self, msg: str, *args: Any) -> None: ...


# (setting, value) pairs this process reported; forked children inherit the record.
_reported: set[tuple[str, str]] = set()


def _report(logger: Warns | None, key: tuple[str, str], msg: str, *args: Any) -> None:
    if key in _reported:
        return
    _reported.add(key)
    (logger or log).warning(msg, *args)


def _on_off(value: bool) -> str:
    return "on" if value else "off"


def _seconds_words(value: float) -> str:
    return f"{value:g} second" + ("" if value == 1 else "s")


def _positive_seconds(value: object) -> float | None:
    """`value` as a finite number of seconds > 0, None when it is not one."""
    if isinstance(value, bool):
        return None
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) and number > 0 else None


def flag(name: str, default: bool, log: Warns | None = None) -> bool:
    """Read a boolean setting; a bad value logs one line and keeps the default."""
    raw = os.environ.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in TRUE | FALSE:
        return raw in TRUE
    _report(
        log,
        (name, raw),
        "forkhooks: %s=%r is not one of 1/0/true/false/yes/no/on/off; using the default, %s",
        name,
        raw,
        _on_off(default),
    )
    return default


def seconds(name: str, default: float, log: Warns | None = None) -> float:
    """Read a positive number of seconds; a bad value logs one line and keeps the default."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    value = _positive_seconds(raw)
    if value is not None:
        return value
    _report(
        log,
        (name, raw),
        "forkhooks: %s=%r is not a positive number of seconds; using the default, %s",
        name,
        raw,
        _seconds_words(default),
    )
    return default


def timeout(value: object, setting: Callable[[Warns | None], float], log: Warns | None = None) -> float:
    """A hook's `timeout=` keyword: None means the setting; a bad value logs one line and keeps the setting."""
    if value is None:
        return setting(log)
    given = _positive_seconds(value)
    if given is not None:
        return given
    default = setting(log)
    _report(
        log,
        ("timeout=", repr(value)),
        "forkhooks: a hook's timeout=%r is not a positive number of seconds; using the default, %s",
        value,
        _seconds_words(default),
    )
    return default


def warm_enabled(log: Warns | None = None) -> bool:
    """FORKHOOKS_WARM (default on): open pools to min_size when a worker starts."""
    return flag("FORKHOOKS_WARM", True, log)


def warm_timeout(log: Warns | None = None) -> float:
    """FORKHOOKS_WARM_TIMEOUT (default 10 s): how long a worker waits for its pools."""
    return seconds("FORKHOOKS_WARM_TIMEOUT", 10.0, log)


def close_timeout(log: Warns | None = None) -> float:
    """FORKHOOKS_CLOSE_TIMEOUT (default 5 s): how long closing a pool may take."""
    return seconds("FORKHOOKS_CLOSE_TIMEOUT", 5.0, log)


def application_name_enabled(log: Warns | None = None) -> bool:
    """FORKHOOKS_APPLICATION_NAME (default on): label connections with role and pid."""
    return flag("FORKHOOKS_APPLICATION_NAME", True, log)


def budget_enabled(log: Warns | None = None) -> bool:
    """FORKHOOKS_BUDGET (default on): check the connection budget in the master."""
    return flag("FORKHOOKS_BUDGET", True, log)


def gc_freeze_enabled(log: Warns | None = None) -> bool:
    """FORKHOOKS_GC_FREEZE (default off): gc.freeze() in the master before its first fork."""
    return flag("FORKHOOKS_GC_FREEZE", False, log)


def server_dsn() -> str | None:
    """FORKHOOKS_DSN: the PostgreSQL `forkhooks connections` and `forkhooks demo` use when given no --dsn."""
    return os.environ.get("FORKHOOKS_DSN", "").strip() or None


# The connection budget's sizes, for Django's checks (`forkhooks check` takes them as options).
WORKERS = "WEB_CONCURRENCY"  # the variable gunicorn (and many platforms) read for the number of workers
THREADS = "FORKHOOKS_THREADS"


def count(name: str) -> tuple[int, str | None]:
    """A whole number >= 1 from variable `name` (1 when unset); with a bad value, 1 and the value's text."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return 1, None
    try:
        value = int(raw)
    except ValueError:
        value = 0
    return (value, None) if value >= 1 else (1, raw)


_ALL: tuple[Callable[[Warns | None], object], ...] = (
    warm_enabled,
    warm_timeout,
    close_timeout,
    application_name_enabled,
    budget_enabled,
    gc_freeze_enabled,
)


def report_bad_values(log: Warns | None = None) -> None:
    """Read every setting once, so a master reports each bad value and its children, forked later, do not."""
    for read in _ALL:
        read(log)
