"""gunicorn's ``gevent`` worker with forkhooks (imported only when used)."""

from __future__ import annotations

try:
    from gunicorn.workers.ggevent import GeventWorker as _GeventWorker
except (ImportError, RuntimeError) as exc:  # gunicorn raises RuntimeError when gevent is missing or too old
    raise ImportError(
        "forkhooks.workers.GeventWorker needs gevent (and packaging, which gunicorn's gevent worker imports "
        f"without declaring it): pip install 'forkhooks[gevent]' ({type(exc).__name__}: {exc})"
    ) from exc

from .workers import ForkhooksWorkerMixin


class GeventWorker(ForkhooksWorkerMixin, _GeventWorker):
    """gunicorn's ``gevent`` worker with forkhooks: Django connections per greenlet, drivers that yield."""
