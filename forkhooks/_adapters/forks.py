"""Plain forks (os.fork, multiprocessing, ProcessPoolExecutor): discard in every child, at fork."""

from __future__ import annotations

import os
from typing import Any

from .._core import djangodb
from .._tools.appname import Role
from .lifecycle import child_started

# Wrappers alive in the parent just before fork(). Other threads' wrappers are
# freed by the interpreter in the child before any at-fork callback runs, and a
# psycopg2 connection's finalizer sends Terminate; holding them across fork lets
# the child make their sockets inert first.
_held_across_fork: list[Any] = []
_installed = False


def _before_fork() -> None:
    _held_across_fork[:] = [(w, w.connection) for w in djangodb.wrappers()]


def _after_fork_in_parent() -> None:
    _held_across_fork.clear()


def _after_fork_in_child() -> None:
    child_started(who=Role.FORKED_CHILD)
    _held_across_fork.clear()


def install() -> bool:
    """Discard in every child this process forks from now on (once per process)."""
    global _installed
    djangodb.watch()
    # at-fork callbacks outlive fork(), so a child of an installed process is installed too.
    if _installed:
        return False
    _installed = True
    os.register_at_fork(before=_before_fork, after_in_parent=_after_fork_in_parent, after_in_child=_after_fork_in_child)
    return True
