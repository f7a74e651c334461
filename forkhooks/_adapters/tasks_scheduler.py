"""django-tasks-scheduler's worker (``manage.py scheduler_worker``), loaded by forkhooks.django: a process per job.

Its worker forks a job execution process for every job, as RQ's worker forks
a work horse. It closes its thread's Django connections before each fork, but
with Django's pool a closed connection goes back to its pool, which stays
open: every job's process inherited the pool and its sockets (measured: every
job failed on the pool's timeout).
"""

from __future__ import annotations

import logging
import os
import signal
from collections.abc import Callable
from contextlib import nullcontext
from typing import Any

from .. import _core
from .._tools.appname import Role
from . import forks
from .cancel import cancel_queries_of, end_backends_after_death
from .lifecycle import close_then_die, one_job
from .patching import wrap_method

log = logging.getLogger("scheduler.forkhooks")  # under the logger the project configures for the scheduler

ROLE = Role.SCHEDULER_JOB  # a job's process names its connections <prefix>:scheduler-job:<pid>

_patched = False


def patch_worker() -> bool:
    """Make django-tasks-scheduler's Worker fork-safe; False if this version has no per-job fork to wrap.

    - The worker closes its connections and pools before it forks each job's
      process: it holds no backend while it waits, and the job inherits none.
    - The job's process discards what it inherited at fork, opens its own
      connections on demand, and closes them (cancelling a running query) when
      the job ends, before the worker's os._exit; SIGTERM closes before it kills.
    - Before the worker kills a job's process (a job stuck past its timeout, a
      stop-job command, a cold shutdown), it cancels that process's queries.
    - A job's process that died without closing (the OOM killer, ``kill -9``)
      has its backends ended once the worker has reaped it.
    """
    global _patched
    if _patched:
        return True
    from scheduler.worker.worker import Worker

    forks.install()  # each job's process discards what it inherited, at fork
    ok = wrap_method(Worker, "fork_job_execution_process", _closing_first, log=log)
    if not ok:
        return False
    _patched = True
    wrap_method(Worker, "worker_perform_job", _closing_after, log=log)
    wrap_method(Worker, "setup_job_execution_process_signals", _sigterm_closes, log=log)
    wrap_method(Worker, "_kill_job_execution_process", _cancelling_first, log=log)
    wrap_method(Worker, "_wait_for_job_execution_process", _ending_backends_of_killed, log=log)
    return True


def _closing_first(original: Callable[..., Any]) -> Callable[..., Any]:
    def fork_job_execution_process(self: Any, *args: Any, **kwargs: Any) -> Any:
        _core.close(log=log, who=Role.SCHEDULER_WORKER)
        return original(self, *args, **kwargs)

    return fork_job_execution_process


def _closing_after(original: Callable[..., Any]) -> Callable[..., Any]:
    def worker_perform_job(self: Any, *args: Any, **kwargs: Any) -> Any:
        # Only a job's process: with --fork-job-execution false the worker runs jobs itself and keeps its pools.
        child = getattr(self, "_is_job_execution_process", False)
        with one_job(ROLE, log) if child else nullcontext():
            return original(self, *args, **kwargs)

    return worker_perform_job


def _sigterm_closes(original: Callable[..., Any]) -> Callable[..., Any]:
    def setup_job_execution_process_signals(self: Any, *args: Any, **kwargs: Any) -> Any:
        result = original(self, *args, **kwargs)
        if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:  # a version that handles SIGTERM keeps its choice
            signal.signal(signal.SIGTERM, close_then_die(ROLE, log))
        return result

    return setup_job_execution_process_signals


def _cancelling_first(original: Callable[..., Any]) -> Callable[..., Any]:
    def kill_job_execution_process(self: Any, *args: Any, **kwargs: Any) -> Any:
        pid = getattr(getattr(self, "_model", None), "job_execution_process_pid", None)
        if pid:
            try:
                n = cancel_queries_of(int(pid), ROLE, log=log)
                log.info("forkhooks: cancelled %d running query(ies) of job process %s", n, pid)
            except Exception:
                log.exception("forkhooks: cancelling job process %s's queries failed; continuing", pid)
        return original(self, *args, **kwargs)

    return kill_job_execution_process


def _ending_backends_of_killed(original: Callable[..., Any]) -> Callable[..., Any]:
    def wait_for_job_execution_process(self: Any, *args: Any, **kwargs: Any) -> Any:
        pid, status = result = original(self, *args, **kwargs)
        if pid and status is not None and os.WIFSIGNALED(status):  # killed: it ran no Python, closed nothing
            end_backends_after_death(int(pid), "job process", log)
        return result

    return wait_for_job_execution_process
