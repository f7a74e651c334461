"""A site no one here wrote: Wagtail as `wagtail start` makes it, preloaded in gunicorn, under a mixed load.

The site is generated from the installed Wagtail once per run, on its own
PostgreSQL database with Django's pool, migrated and populated (tests/wagtailsite).
Its start-up reads from the database, as many sites' do, so with --preload the
master holds a pooled connection when it forks. Other worker classes (sync,
uvicorn) and the benchmark run in bench/wagtail.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from forkhooks.demo.procnet import server_sockets

from . import wagtailsite
from .harness import app_backends
from .record import record
from .servers import Server, gunicorn, poll, start

pytest.importorskip("wagtail", reason="the real-application tests need Wagtail: pip install 'wagtail>=7'")

VISITS = 150  # article pages : form POSTs : admin logins = 3 : 1 : 1

ENABLED = [
    ("gthread", ["-k", "gthread", "--threads", "4"]),
    ("gevent", ["-k", "gevent"]),
]


@pytest.fixture(scope="session")
def site(dsn: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[wagtailsite.WagtailSite]:
    """The generated, migrated, populated Wagtail site (built once per run)."""
    built = wagtailsite.build(tmp_path_factory.mktemp("wagtail") / "site", dsn)
    try:
        yield built
    finally:
        wagtailsite.drop(built, dsn)


def serve(site: wagtailsite.WagtailSite, tmp_path: Path, *args: str) -> Server:
    """gunicorn with 4 preloaded workers on the Wagtail site, answering."""
    return start(gunicorn(*args, wagtailsite.WSGI), site.dsn, tmp_path, env=site.env(), cwd=site.path)


@pytest.mark.e2e
@pytest.mark.parametrize(("name", "args"), ENABLED, ids=[c[0] for c in ENABLED])
def test_wagtail_every_visit_gets_its_own_page_login_and_submission(
    name: str, args: list[str], site: wagtailsite.WagtailSite, db: psycopg.Connection, tmp_path: Path
) -> None:
    """With forkhooks' hooks: pages, admin logins and form POSTs all answer, each with its own content."""
    if name == "gevent":
        pytest.importorskip("gevent", reason="the gevent worker needs gevent: pip install 'forkhooks[gevent]'")
    server = serve(site, tmp_path, "-c", "python:forkhooks.gunicorn", *args)
    try:
        results = wagtailsite.drive(server.target, VISITS, concurrency=8)
        master = server_sockets(server.pid)
    finally:
        code = server.stop()
    poll(lambda: app_backends(db) == 0, timeout=5, what="all app backends gone after shutdown")
    record("wagtail", name, results, master_sockets=master, site_built_s=round(site.seconds, 1))
    assert results.requests == VISITS
    assert (results.failed, results.wrong) == (0, 0), results.summary()
    assert len(results.pids) == 4, results.summary()
    assert master == 0
    assert code == 0, server.log()[-3000:]


@pytest.mark.e2e
def test_control_wagtail_without_forkhooks_fails(
    site: wagtailsite.WagtailSite, db: psycopg.Connection, tmp_path: Path
) -> None:
    """The same site and load without forkhooks: workers share the master's pooled connection and fail."""
    server = serve(site, tmp_path, "-k", "sync")
    try:
        master = server_sockets(server.pid)
        results = wagtailsite.drive(server.target, VISITS, concurrency=8, timeout=5, stop_after=3)
    finally:
        server.kill()
    record("wagtail-control", "sync", results, master_sockets=master)
    assert master > 0, "the master keeps the connection its start-up query opened"
    assert results.failed + results.wrong >= 3, results.summary()
