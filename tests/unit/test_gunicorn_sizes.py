"""Workers and threads read from gunicorn's own Config, for the connection budget."""

from __future__ import annotations

import pytest
from gunicorn.config import Config

from forkhooks._adapters.gunicorn import sizes

pytestmark = pytest.mark.unit


def config(**values: object) -> Config:
    """gunicorn's Config with these settings, as its command line or gunicorn.conf.py sets them."""
    cfg = Config()
    for name, value in values.items():
        cfg.set(name, value)
    return cfg


def test_only_threaded_workers_count_their_threads() -> None:
    """Only gthread runs requests on several threads: another class with --threads opens one connection per alias."""
    found = sizes(config(workers=5, threads=8, worker_class="uvicorn_worker.UvicornWorker"))
    assert (found["workers"], found["threads"]) == (5, 1)


def test_sync_with_threads_is_gthread() -> None:
    """gunicorn runs `sync` with --threads > 1 as gthread: the threads count."""
    found = sizes(config(workers=5, threads=8))
    assert (found["workers"], found["threads"]) == (5, 8)


@pytest.mark.parametrize("worker_class", ["gthread", "gunicorn.workers.gthread.ThreadWorker"])
def test_gthread_workers_use_their_threads(worker_class: str) -> None:
    """gthread, by its short name or its class path, counts its threads."""
    found = sizes(config(workers=3, threads=6, worker_class=worker_class))
    assert (found["workers"], found["threads"]) == (3, 6)


def test_gevent_workers_count_one_connection_per_client() -> None:
    """A gevent worker runs one greenlet per client: worker_connections, not threads."""
    found = sizes(config(workers=2, worker_class="gevent", worker_connections=250))
    assert (found["workers"], found["threads"]) == (2, 250)


def test_defaults() -> None:
    """gunicorn's defaults: one sync worker, one thread."""
    found = sizes(Config())
    assert (found["workers"], found["threads"]) == (1, 1)
    assert found.get("dirty_workers", 0) == 0  # gunicorn >= 25 has dirty workers, off by default
