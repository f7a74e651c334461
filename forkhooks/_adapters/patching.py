"""Wrap a job runner's method once: the adapters' one way into code that has no hook where they need one."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .._core import Log


def wrap_method(
    cls: Any, name: str, wrap: Callable[[Callable[..., Any]], Callable[..., Any]], *, log: Log | None = None
) -> bool:
    """Replace `cls.name` with `wrap(itself)`, once; False when `cls` has no such method (said through `log`)."""
    current = getattr(cls, name, None)
    if current is None:
        if log is not None:
            log.warning(
                "forkhooks: this %s's %s has no %s; that part of forkhooks is off",
                cls.__module__.partition(".")[0],
                cls.__name__,
                name,
            )
        return False
    if getattr(current, "_forkhooks", False):  # wrapped already (imported twice, or a second adapter)
        return True
    wrapped = wrap(current)
    wrapped._forkhooks = True  # type: ignore[attr-defined]
    setattr(cls, name, wrapped)
    return True
