"""The AppConfig of forkhooks.django: install the at-fork discard once Django is ready."""

from __future__ import annotations

from django.apps import AppConfig

from .._adapters.forks import install


class ForkhooksConfig(AppConfig):
    """Every process forked after setup (multiprocessing, ProcessPoolExecutor, os.fork) starts clean."""

    name = "forkhooks.django"
    label = "forkhooks"
    verbose_name = "forkhooks"

    def ready(self) -> None:
        """Register the child discard with os.register_at_fork (once per process) and the system checks."""
        from . import checks  # noqa: F401  (registers forkhooks.W001, W002, W003, I001)

        install()
