"""uWSGI's graceful harakiri: cancel a stuck worker's queries when uWSGI signals it first.

Plain harakiri is a SIGKILL, and a busy worker skips uwsgi.atexit: nothing can
run there (its successor ends its backends, see uwsgi_reap). With
``harakiri-graceful-timeout``, uWSGI first sends ``harakiri-graceful-signal``
(SIGTERM by default, which uWSGI handles itself). Set to a signal uWSGI leaves
alone in workers, forkhooks handles it: the stuck request's query is cancelled,
the request fails at once, the worker lives on.
"""

from __future__ import annotations

import os
import signal
from typing import Any

from .. import _core
from .._core import djangodb as _django
from . import stopsignals
from .uwsgi_config import harakiri_signal, log


def _cancel_queries(signum: int, frame: Any) -> None:
    """uWSGI is about to kill this stuck worker: cancel its running queries, so the request fails now."""
    cancelled = 0
    for wrapper in _django.wrappers():
        conn = getattr(wrapper, "connection", None)
        if conn is None:
            continue
        try:
            cancelled += _core.cancel_running_query(wrapper, conn, _core.settings.close_timeout(log))
        except Exception:
            log.exception("forkhooks: cancelling the query of Django connection %r failed", wrapper.alias)
    log.warning("forkhooks: worker %d: harakiri: cancelled %d running query(ies)", os.getpid(), cancelled)


def handle() -> None:
    """In a worker: handle the graceful harakiri signal if forkhooks can take it, and keep it off pool threads."""
    signum = harakiri_signal()
    if signum is not None:
        stopsignals.block_also(signum)
        signal.signal(signum, _cancel_queries)
