"""The AppConfig of forkhooks.django: install the at-fork discard once Django is ready."""

from __future__ import annotations

import importlib
import sys

from django.apps import AppConfig

from .._adapters.forks import install

# Management commands that fork workers after Django is set up, and what each needs beyond the
# at-fork discard: "module:function", imported and called only when that command runs.
RUNNERS = {
    "rqworker-pool": "forkhooks._adapters.rq:patch_worker_pool",
}


def command() -> str | None:
    """The management command this process runs (`manage.py X`, `django-admin X`, `python -m django X`)."""
    return sys.argv[1] if len(sys.argv) > 1 and not sys.argv[1].startswith("-") else None


class ForkhooksConfig(AppConfig):
    """Every process forked after setup (multiprocessing, ProcessPoolExecutor, os.fork) starts clean."""

    name = "forkhooks.django"
    label = "forkhooks"
    verbose_name = "forkhooks"

    def ready(self) -> None:
        """Register the child discard (once per process), the system checks, and a job runner's own steps."""
        from . import checks  # noqa: F401  (registers forkhooks.W001, W002, W003, I001)

        install()
        target = RUNNERS.get(command() or "")
        if target is not None:
            module, _, function = target.partition(":")
            getattr(importlib.import_module(module), function)()
