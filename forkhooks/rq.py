"""RQ: ``rq worker -w forkhooks.rq.Worker`` (django-rq: ``manage.py rqworker --worker-class forkhooks.rq.Worker``).

``rq.Worker`` forks a work horse per job. ``forkhooks.rq.Worker`` closes the
worker's connections and pools before each fork; the horse discards what it
inherited, opens its own connections on first use (no warm-up: it runs one
job) and closes them, cancelling a query left running by a job timeout,
before RQ ends it with ``os._exit``. For a worker class of your own, put
``ForkhooksWorkerMixin`` first in its bases.

``SimpleWorker`` runs jobs in the worker process itself and ``SpawnWorker``
starts each horse as a new interpreter: neither hands connections across
fork, so neither needs forkhooks.
"""

from __future__ import annotations

from ._adapters.rq import ForkhooksWorkerMixin, Worker

__all__ = ["ForkhooksWorkerMixin", "Worker"]
