"""The AppConfig of forkhooks.django: install the at-fork discard once Django is ready, and a job runner's adapter."""

from __future__ import annotations

import importlib
import logging
import sys
from collections.abc import Sequence

from django.apps import AppConfig, apps

from .._adapters.forks import install

log = logging.getLogger("forkhooks")

# The management commands that start a job runner's supervisor, which forks the
# processes that run the jobs: command name -> (the app that provides it, the
# adapter that process needs). One line per runner.
RUNNERS: dict[str, tuple[str, str]] = {
    "run_huey": ("huey.contrib.djhuey", "forkhooks._adapters.huey"),
    "qcluster": ("django_q", "forkhooks._adapters.djangoq"),
}


def runner_command(argv: Sequence[str]) -> str | None:
    """The job runner's management command this process runs, or None.

    Django's ManagementUtility runs the command named by argv[1], and sets
    Django up (so calls ready()) just before it imports that command: argv[1]
    is the one thing that already says, at this point, which command will run.
    The runner's own app must be installed too, so that a project's unrelated
    command of the same name loads nothing.
    """
    name = argv[1] if len(argv) > 1 else ""
    runner = RUNNERS.get(name)
    if runner is None or not apps.is_installed(runner[0]):
        return None
    return name


def install_runner(argv: Sequence[str]) -> str | None:
    """Load the adapter of the job runner this process runs (see runner_command); its module name, or None."""
    name = runner_command(argv)
    if name is None:
        return None
    module = RUNNERS[name][1]
    try:
        importlib.import_module(module)  # connects its hooks on import, once
    except Exception:
        log.exception("forkhooks: loading %s for %r failed; continuing with the at-fork discard only", module, name)
        return None
    return module


class ForkhooksConfig(AppConfig):
    """Every process forked after setup (multiprocessing, ProcessPoolExecutor, os.fork) starts clean."""

    name = "forkhooks.django"
    label = "forkhooks"
    verbose_name = "forkhooks"

    def ready(self) -> None:
        """Register the child discard (once per process) and the system checks; in a job runner, its adapter."""
        from . import checks  # noqa: F401  (registers forkhooks.W001, W002, W003, I001)

        install()
        install_runner(sys.argv)
