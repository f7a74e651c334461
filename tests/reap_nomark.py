"""Test-only gunicorn config, a control: forkhooks' hooks, but workers get no exit mark, so the master always looks."""

from typing import Any

import forkhooks.gunicorn as _fh
from forkhooks import _core

globals().update({name: getattr(_fh, name) for name in _fh.__all__})

preload_app = True


def pre_fork(server: Any, worker: Any) -> None:
    """Close the master's connections before the fork, as forkhooks does, without the worker's exit mark."""
    _core.close(log=server.log, who="master")
