"""The steps every adapter shares: a master before it forks, a child as it starts.

The core discards and closes; these add what an operator needs around it:
each process names its connections after its role and pid, and a master
checks its settings and the connection budget before its first fork.
"""

from __future__ import annotations

from .. import _core
from .._core import Log, Report
from .._tools import appname, budget


def child_started(*, log: Log | None = None, who: str = "worker") -> Report:
    """In a new child: discard what it inherited, then name the connections it will open."""
    report = _core.discard(log=log, who=who)
    try:
        appname.label(who)
    except Exception:
        (log or _core.steps._log).exception("forkhooks: naming this process's connections failed; continuing")
    return report


def master_ready(
    *,
    log: Log | None = None,
    workers: int = 1,
    threads: int = 1,
    dirty_workers: int = 0,
    dirty_threads: int = 1,
    timeout: float | None = None,
) -> Report:
    """A master, before its first fork: close what it opened, refuse bad pool settings, name, check the budget.

    Raises SystemExit when a pool setting is invalid: every worker would fail
    every request, so the server must not start.
    """
    log = log or _core.steps._log
    report = _core.close(log=log, who="master", timeout=timeout)
    _core.refuse_invalid_pools(report, log)
    try:
        appname.label("master")
    except Exception:
        log.exception("forkhooks: naming the master's connections failed; continuing")
    if _core.settings.flag("FORKHOOKS_BUDGET", True):
        try:
            for found in budget.check(workers, threads, dirty_workers, dirty_threads):
                if found.over:
                    log.warning("forkhooks: connection budget %s. Fix: %s", found, found.fix())
                else:
                    log.info("forkhooks: connection budget %s", found)
        except Exception:
            log.exception("forkhooks: checking the connection budget failed; continuing")
    return report
