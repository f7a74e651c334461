"""Worker classes for ``gunicorn -k``: ``forkhooks.workers.SyncWorker`` and friends.

``ASGIWorker`` (gunicorn >= 24), ``UvicornWorker`` and ``UvicornH11Worker``
(uvicorn-worker) and ``GeventWorker`` (gevent) import what they need only when used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._adapters.workers import ForkhooksWorkerMixin, SyncWorker, ThreadWorker

if TYPE_CHECKING:
    from ._adapters.asgi import ASGIWorker as ASGIWorker
    from ._adapters.gevent import GeventWorker as GeventWorker
    from ._adapters.uvicorn import UvicornH11Worker as UvicornH11Worker
    from ._adapters.uvicorn import UvicornWorker as UvicornWorker

# The lazy variants stay out of __all__: `import *` must not need gunicorn >= 24, uvicorn-worker or gevent.
__all__ = ["ForkhooksWorkerMixin", "SyncWorker", "ThreadWorker"]

_LAZY = {
    "ASGIWorker": "._adapters.asgi",
    "UvicornWorker": "._adapters.uvicorn",
    "UvicornH11Worker": "._adapters.uvicorn",
    "GeventWorker": "._adapters.gevent",
}


def __getattr__(name: str) -> Any:
    """Import the variants lazily, with a clear error if what they need is missing."""
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name], __package__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
