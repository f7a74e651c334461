"""The signals that stop a worker, for each server, and a way to keep them off a thread.

A stop sent to a whole process group (systemd's default KillMode=control-group,
Ctrl-C in a terminal) reaches every process; the servers then send their own
stop to each worker as well, so a worker sees two stop signals within
microseconds. The adapters make sure the second cannot undo the first.
"""

from __future__ import annotations

import signal
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

# gunicorn: SIGTERM asks a worker to finish what it does, SIGINT and SIGQUIT to quit now; the
# master follows a group stop with its own SIGQUIT to each worker.
GUNICORN = (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT)

# uWSGI stops or reloads a process with any of these; its C handlers call exit(), which runs
# uwsgi.atexit in whichever thread the kernel picked.
UWSGI = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2)

_also: set[int] = set()  # blocked() blocks these too (uWSGI's graceful harakiri signal, when forkhooks handles it)


def block_also(signum: int) -> None:
    """From now on, blocked() also blocks `signum`."""
    _also.add(signum)


@contextmanager
def blocked(signals: Iterable[int] = UWSGI) -> Iterator[None]:
    """Block the stop signals in this thread; threads started meanwhile keep them blocked for good.

    A signal sent to the process (or its whole group) may otherwise land on a
    psycopg_pool thread, which then runs exit() and uwsgi.atexit, and closes
    the pool from inside the pool.
    """
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, set(signals) | _also)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)
