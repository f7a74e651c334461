"""Worker classes for ``gunicorn -k``: ``forkhooks.workers.SyncWorker`` and friends.

``UvicornWorker`` and ``UvicornH11Worker`` import uvicorn-worker only when used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._workers import ASGIWorker, ForkhooksWorkerMixin, SyncWorker, ThreadWorker

if TYPE_CHECKING:
    from ._uvicorn import UvicornH11Worker as UvicornH11Worker
    from ._uvicorn import UvicornWorker as UvicornWorker

# The uvicorn variants stay out of __all__: `import *` must not need uvicorn-worker.
__all__ = ["ASGIWorker", "ForkhooksWorkerMixin", "SyncWorker", "ThreadWorker"]

_UVICORN = {"UvicornWorker", "UvicornH11Worker"}


def __getattr__(name: str) -> Any:
    """Import the uvicorn-worker variants lazily, with a clear error if it is missing."""
    if name in _UVICORN:
        from . import _uvicorn

        return getattr(_uvicorn, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
