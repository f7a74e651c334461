"""The AppConfig of forkhooks.django: install the at-fork discard once Django is ready, and a job runner's adapter."""

from __future__ import annotations

import importlib
import logging
import sys
from collections.abc import Sequence

from django.apps import AppConfig, apps

from .._adapters.forks import install

log = logging.getLogger("forkhooks")

# Management commands that fork workers after Django is set up, one line per runner: the command ->
# (the app that provides it, what it needs beyond the at-fork discard). "module" is imported (it
# connects its hooks on import, once); "module:function" is imported and the function called.
RUNNERS: dict[str, tuple[str, str]] = {
    "rqworker-pool": ("django_rq", "forkhooks._adapters.rq:patch_worker_pool"),
    "run_huey": ("huey.contrib.djhuey", "forkhooks._adapters.huey"),
    "qcluster": ("django_q", "forkhooks._adapters.djangoq"),
    "scheduler_worker": ("scheduler", "forkhooks._adapters.tasks_scheduler:patch_worker"),
}


def command(argv: Sequence[str] | None = None) -> str | None:
    """The management command this process runs (`manage.py X`, `django-admin X`, `python -m django X`)."""
    argv = sys.argv if argv is None else argv
    return argv[1] if len(argv) > 1 and not argv[1].startswith("-") else None


def runner_command(argv: Sequence[str] | None = None) -> str | None:
    """The job runner's management command this process runs, or None.

    Django's ManagementUtility runs the command named by argv[1], and sets
    Django up (so calls ready()) just before it imports that command: argv[1]
    is the one thing that already says, at this point, which command will run.
    The runner's own app must be installed too, so that a project's unrelated
    command of the same name loads nothing.
    """
    name = command(argv) or ""
    runner = RUNNERS.get(name)
    if runner is None or not apps.is_installed(runner[0]):
        return None
    return name


def install_runner(argv: Sequence[str] | None = None) -> str | None:
    """Load what the job runner this process runs needs (see runner_command); its target, or None."""
    name = runner_command(argv)
    if name is None:
        return None
    target = RUNNERS[name][1]
    module, _, function = target.partition(":")
    try:
        loaded = importlib.import_module(module)
        if function:
            getattr(loaded, function)()
    except Exception:
        log.exception("forkhooks: loading %s for %r failed; continuing with the at-fork discard only", target, name)
        return None
    return target


class ForkhooksConfig(AppConfig):
    """Every process forked after setup (multiprocessing, ProcessPoolExecutor, os.fork) starts clean."""

    name = "forkhooks.django"
    label = "forkhooks"
    verbose_name = "forkhooks"

    def ready(self) -> None:
        """Register the child discard (once per process), the system checks, and a job runner's own steps."""
        from . import checks  # noqa: F401  (registers forkhooks.W001, W002, W003, I001)

        install()
        install_runner()
