"""Test-only gunicorn config, the control: forkhooks' hooks as they were before they ended dead workers' backends.

No child_exit, no on_exit, and a dirty_worker_exit that only closes the dirty arbiter's own connections.
"""

from typing import Any

import forkhooks.gunicorn as _fh
from forkhooks import _core

globals().update({name: getattr(_fh, name) for name in _fh.__all__ if name not in ("child_exit", "on_exit")})

preload_app = True


def dirty_worker_exit(arbiter: Any, worker: Any) -> None:
    """Close the dirty arbiter's own connections, and nothing more."""
    _core.close(log=arbiter.log, who="dirty arbiter")
