"""uWSGI: ``import = forkhooks.uwsgi`` in the ini file (or ``--import forkhooks.uwsgi``, or import it from wsgi.py).

uWSGI loads the app in the master and forks its workers from C, so
``os.register_at_fork`` callbacks do not run there (only with
``--py-call-osafterfork`` or ``--py-call-uwsgi-fork-hooks``). This module puts
the child discard first on uWSGI's post-fork chain (the one ``@postfork`` of
uwsgidecorators uses), warms the pools after it, and closes them from
``uwsgi.atexit`` when a worker exits. Hooks registered before or after keep
running.

The master keeps the connections its app opened at load time: default uWSGI
has no Python point between loading the app and forking. Workers are safe
anyway, because each discards what it inherited before serving. With
``--py-call-uwsgi-fork-hooks`` uWSGI runs at-fork callbacks in the master, and
the master closes its own before every fork.
"""

from __future__ import annotations

from ._adapters.uwsgi import at_exit, post_fork

__all__ = ["post_fork", "at_exit"]
