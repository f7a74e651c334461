"""uWSGI: ``import = forkhooks.uwsgi`` in the ini file (or ``--import forkhooks.uwsgi``), before the app.

uWSGI loads the app in the master and forks everything from C, without the
GIL and without ``os.register_at_fork`` callbacks. Importing this module:

- closes the master's connections and pools once uWSGI has loaded the app and
  before it forks anything (it watches the import of ``uwsgi`` that uWSGI's C
  code makes right after its loaders), so no psycopg_pool thread is alive in
  the master when it forks and no worker can hang on the GIL;
- puts the child discard first on uWSGI's post-fork chain (the one
  ``@postfork`` of uwsgidecorators uses), then warms the worker's pools with
  uWSGI's stop signals blocked, so the pools' threads never take a stop signal;
- closes the pools from ``uwsgi.atexit`` when a worker exits (also re-hooked
  after a lazy-apps worker loaded its app). Hooks registered before or after
  keep running;
- makes uWSGI's stop handlers block each other's signals in every child, so a
  stop sent to the whole process group cannot re-enter ``exit()`` (a skipped
  close, or a worker hung in exit);
- ends the backends of a child that died without closing (busy at a stop,
  harakiri, SIGKILL): its respawned successor does, or the master's exit.
"""

from __future__ import annotations

from ._adapters.uwsgi import at_exit, post_fork

__all__ = ["post_fork", "at_exit"]
