"""uWSGI's graceful harakiri: cancel a stuck worker's queries when uWSGI signals it first.

Plain harakiri is a SIGKILL, and a busy worker skips uwsgi.atexit: nothing can
run there (its successor ends its backends, see uwsgi_reap). With
``harakiri-graceful-timeout``, uWSGI first sends ``harakiri-graceful-signal``
(SIGTERM by default, which uWSGI handles itself). Set to a signal uWSGI leaves
alone in workers, forkhooks handles it: the stuck request's query is cancelled,
the request fails at once, the worker lives on.

A Python signal handler runs only once the main thread is back in Python, and a
driver that blocks in C for the whole query (mysqlclient) keeps it out until
the query ends, after uWSGI's SIGKILL. So with threads on, a thread of ours
takes the signal (blocked in every other thread) and cancels from there.
"""

from __future__ import annotations

import os
import signal
import threading
from typing import Any

from .. import _core
from .._core import djangodb as _django
from . import stopsignals
from .uwsgi_config import harakiri_signal, log, threads_enabled


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


_thread_in: int | None = None  # the pid whose thread takes the signal (a lazy-apps worker calls handle() twice)


def _take_in_a_thread(signum: int) -> None:
    while True:
        try:
            signal.sigwait({signum})
            _cancel_queries(signum, None)
        except Exception:
            log.exception("forkhooks: handling the graceful harakiri signal failed; waiting for the next one")


def handle() -> None:
    """In a worker: handle the graceful harakiri signal if forkhooks can take it, and keep it off pool threads."""
    global _thread_in
    signum = harakiri_signal()
    if signum is None:
        return
    stopsignals.block_also(signum)
    # Still the process's handler: a thread started before this one (an app's own) that leaves the
    # signal unblocked takes it into the main thread's handler, not into the default action (exit).
    signal.signal(signum, _cancel_queries)
    if not threads_enabled():
        return
    try:
        signal.pthread_sigmask(signal.SIG_BLOCK, {signum})  # the main thread too: threads started later inherit it
        if _thread_in != os.getpid():
            threading.Thread(target=_take_in_a_thread, args=(signum,), name="forkhooks-harakiri", daemon=True).start()
            _thread_in = os.getpid()
    except Exception:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signum})
        log.exception("forkhooks: no thread for the graceful harakiri signal; the main thread handles it")
