"""Celery: ``import forkhooks.celery`` in the module that creates your Celery app.

For the prefork pool (Celery's default) the worker's main process closes its
connections and pools before every fork, the first pool processes and each
replacement alike; each pool process discards what it inherited at fork
(before Celery's Django fixup runs), warms its pools (FORKHOOKS_WARM) and keeps
them across tasks, and closes them, cancelling a running query, when it ends.
Celery's fixup still hands each connection back at the end of a task; it no
longer closes the pools (celery #10554).

The solo, threads, gevent and eventlet pools do not fork: they work as they
do without this import.
"""

from __future__ import annotations

from ._adapters import celery as _celery  # noqa: F401  # importing it connects to Celery's signals

__all__: list[str] = []  # importing this module is the whole interface
