"""uvicorn-worker's classes with forkhooks (imported only when one is used)."""

from __future__ import annotations

try:
    from uvicorn_worker import UvicornH11Worker as _UvicornH11Worker
    from uvicorn_worker import UvicornWorker as _UvicornWorker
except ImportError as exc:  # pragma: no cover - exercised in a subprocess test
    raise ImportError(
        "forkhooks.workers.UvicornWorker needs the uvicorn-worker package: "
        "pip install 'forkhooks[uvicorn]' (or uvicorn-worker)"
    ) from exc

from .workers import ForkhooksWorkerMixin


class UvicornWorker(ForkhooksWorkerMixin, _UvicornWorker):
    """uvicorn-worker's ``UvicornWorker`` with forkhooks."""


class UvicornH11Worker(ForkhooksWorkerMixin, _UvicornH11Worker):
    """uvicorn-worker's ``UvicornH11Worker`` (pure-Python h11) with forkhooks."""
