"""gunicorn server hooks: ``from forkhooks.gunicorn import *`` or ``-c python:forkhooks.gunicorn``.

The master closes what it opened (so it holds no server connection and its
children inherit none), each child discards what it inherited anyway, workers
warm their pools after loading the app and close them on the way out.

To call these from hooks of your own, pass gunicorn's positional arguments and
any option by keyword: gunicorn checks a hook's arity, so options are
keyword-only and your hook keeps the signature gunicorn expects::

    import forkhooks.gunicorn as fh

    def post_fork(server, worker):
        fh.post_fork(server, worker)
        ...  # your own work
"""

from __future__ import annotations

from ._adapters import gunicorn as _hooks
from ._adapters.gunicorn import *  # noqa: F403  (the hooks gunicorn reads from this module)

__all__ = _hooks.__all__
