"""forkhooks' few settings, read from the environment when a hook runs."""

from __future__ import annotations

import logging
import os

log = logging.getLogger("forkhooks")

FALSE = {"0", "false", "no", "off"}
TRUE = {"1", "true", "yes", "on"}


def flag(name: str, default: bool) -> bool:
    """Read a boolean setting; a bad value logs one line and keeps the default."""
    raw = os.environ.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in TRUE | FALSE:
        return raw in TRUE
    log.warning("forkhooks: %s=%r is not one of 1/0/true/false/yes/no/on/off; using %s", name, raw, default)
    return default


def seconds(name: str, default: float) -> float:
    """Read a positive number of seconds; a bad value logs one line and keeps the default."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
        if value > 0:
            return value
    except ValueError:
        pass
    log.warning("forkhooks: %s=%r is not a positive number of seconds; using %s", name, raw, default)
    return default


def warm_enabled() -> bool:
    """FORKHOOKS_WARM (default on): open pools to min_size when a worker starts."""
    return flag("FORKHOOKS_WARM", True)


def warm_timeout() -> float:
    """FORKHOOKS_WARM_TIMEOUT (default 10 s): how long a worker waits for its pools."""
    return seconds("FORKHOOKS_WARM_TIMEOUT", 10.0)


def close_timeout() -> float:
    """FORKHOOKS_CLOSE_TIMEOUT (default 5 s): how long closing a pool may take."""
    return seconds("FORKHOOKS_CLOSE_TIMEOUT", 5.0)
