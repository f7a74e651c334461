"""Test-only gunicorn config: every forkhooks hook except the two that end a dead worker's backends (the control)."""

import forkhooks.gunicorn as _fh

globals().update({name: getattr(_fh, name) for name in _fh.__all__ if name not in ("child_exit", "on_exit")})

preload_app = True
