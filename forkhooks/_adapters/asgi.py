"""gunicorn's native ``asgi`` worker with forkhooks (gunicorn >= 24; imported only when used)."""

from __future__ import annotations

try:
    from gunicorn.workers.gasgi import ASGIWorker as _ASGIWorker
except ImportError as exc:
    import gunicorn

    raise ImportError(
        "forkhooks.workers.ASGIWorker needs gunicorn >= 24 (its native asgi worker); "
        f"gunicorn {gunicorn.__version__} is installed: pip install 'gunicorn>=24'"
    ) from exc

from .workers import ForkhooksWorkerMixin


class ASGIWorker(ForkhooksWorkerMixin, _ASGIWorker):
    """gunicorn's native ``asgi`` worker with forkhooks."""
