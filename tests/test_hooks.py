"""The gunicorn hooks and worker classes: signatures, bad input, warm-up, dirty workers."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest
from gunicorn.config import Config

import forkhooks.gunicorn as fh
from forkhooks.demo import loadgen

from .harness import app_backends, run_python
from .record import record
from .servers import WSGI, Server, gunicorn, poll, serve


def test_gunicorn_accepts_every_hook_with_its_arity() -> None:
    """Each hook passes gunicorn's own validator (it checks the number of positional arguments)."""
    cfg = Config()
    for name in fh.__all__:
        if name not in cfg.settings:  # a hook newer than the installed gunicorn
            continue
        cfg.set(name, getattr(fh, name))
        assert cfg.settings[name].get() is getattr(fh, name)


def test_import_star_brings_exactly_the_hooks() -> None:
    """`from forkhooks.gunicorn import *` defines the hooks and nothing else."""
    namespace: dict[str, object] = {}
    exec("from forkhooks.gunicorn import *", namespace)
    assert sorted(k for k in namespace if k != "__builtins__") == sorted(fh.__all__)


def test_hooks_never_raise_whatever_they_are_given() -> None:
    """Hooks called with junk, or with Django unconfigured, log and return: a worker never dies of them."""
    done = run_python(
        """
        import logging, sys
        logging.basicConfig(level=logging.INFO, stream=sys.stdout)
        import django  # loaded but never configured
        import forkhooks.gunicorn as fh
        for junk in (None, object(), "x"):
            fh.when_ready(junk); fh.pre_fork(junk, junk); fh.post_fork(junk, junk)
            fh.post_worker_init(junk); fh.worker_exit(junk, junk); fh.worker_abort(junk)
            fh.worker_int(junk); fh.dirty_post_fork(junk, junk); fh.dirty_worker_init(junk)
            fh.dirty_worker_exit(junk, junk)
        print("survived")
        """
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.rstrip().endswith("survived")
    assert "forkhooks: worker" in done.stdout


def test_warm_up_against_a_refusing_server_logs_one_line_and_returns(tmp_path: Path) -> None:
    """A database that refuses connections at warm-up: one warning naming the pool, no exception."""
    done = run_python(
        """
        import logging, sys
        logging.basicConfig(level=logging.INFO, stream=sys.stdout)
        import django
        from django.conf import settings
        from forkhooks.demo.site.database import django_database
        settings.configure(DATABASES={"default": django_database(
            "host=127.0.0.1 port=1 dbname=x connect_timeout=1", pool={"min_size": 1})})
        django.setup()
        import forkhooks
        forkhooks.warm(timeout=1.0)
        print("survived")
        """
    )
    assert done.returncode == 0, done.stderr
    assert "pool 'default' not ready within 1.0s (no connection: " in done.stdout, done.stdout
    assert done.stdout.count("not ready within") == 1, done.stdout
    assert "Traceback" not in done.stdout + done.stderr, done.stdout + done.stderr
    assert done.stdout.rstrip().endswith("survived")


def test_missing_uvicorn_worker_names_the_package_to_install() -> None:
    """-k forkhooks.workers.UvicornWorker without uvicorn-worker: an error that says what to install."""
    done = run_python(
        """
        import sys
        sys.modules["uvicorn_worker"] = None  # as if it were not installed
        import forkhooks.workers
        from forkhooks.workers import SyncWorker  # the others still import
        try:
            forkhooks.workers.UvicornWorker
        except ImportError as exc:
            print(exc)
        """
    )
    assert "pip install 'forkhooks[uvicorn]'" in done.stdout, done.stderr


def test_asgi_worker_on_gunicorn_23_names_the_version_needed() -> None:
    """-k forkhooks.workers.ASGIWorker on gunicorn < 24 (no gasgi): an error naming the version; the rest imports."""
    done = run_python(
        """
        import sys
        sys.modules["gunicorn.workers.gasgi"] = None  # as on gunicorn 23
        from forkhooks.workers import *  # needs neither gasgi nor uvicorn-worker
        import forkhooks.workers
        try:
            forkhooks.workers.ASGIWorker
        except ImportError as exc:
            print(exc)
        """
    )
    assert "needs gunicorn >= 24" in done.stdout, done.stderr


@pytest.mark.e2e
@pytest.mark.parametrize("warm", ["1", "0"])
def test_workers_warm_their_pools_unless_turned_off(
    dsn: str, db: psycopg.Connection, tmp_path: Path, warm: str
) -> None:
    """post_worker_init opens each worker's pool to min_size=2 (8 backends); FORKHOOKS_WARM=0 opens none."""
    server = serve(dsn, tmp_path, ["-c", "python:forkhooks.gunicorn"], WSGI, env={"FORKHOOKS_WARM": warm})
    try:
        if warm == "1":
            poll(lambda: app_backends(db) == 8, timeout=15, what="4 workers x min_size 2 backends")
        else:
            poll(lambda: server.log().count("warm-up off") == 4, timeout=15, what="4 workers booted")
            assert app_backends(db) == 0
    finally:
        server.stop()


@pytest.mark.e2e
@pytest.mark.parametrize("enabled", [True, False], ids=["forkhooks", "control"])
def test_dirty_workers_get_their_own_connections(
    dsn: str, db: psycopg.Connection, tmp_path: Path, enabled: bool
) -> None:
    """gunicorn dirty workers (forked by the dirty arbiter, itself forked before when_ready) answer right."""
    pytest.importorskip("gunicorn.dirty", reason="dirty workers need gunicorn >= 25")
    args = ["--dirty-app", "tests.testsite.dirty:QueryApp", "--dirty-workers", "2"]
    if enabled:
        args = ["-c", "gunicorn_conf/star.py", *args]
    server = serve(dsn, tmp_path, args, WSGI)
    try:
        # The control hangs on shared sockets: short timeout, and it stops once the failure is proven.
        n, timeout, stop = (400, 10.0, None) if enabled else (200, 3.0, loadgen.proven())
        results = loadgen.run(server.target, n, concurrency=32, timeout=timeout, path="/dirty-echo", stop_when=stop)
    finally:
        server.kill() if not enabled else server.stop()
    record("gunicorn-dirty", "forkhooks" if enabled else "control", results)
    if enabled:
        assert (results.failed, results.wrong) == (0, 0), results.summary()
        assert "forkhooks: dirty arbiter" in server.log()
        poll(lambda: app_backends(db) == 0, timeout=5, what="all app backends gone after shutdown")
    else:
        assert results.failed + results.wrong > 0, results.summary()


@pytest.mark.e2e
@pytest.mark.parametrize("args", [["-c", "python:forkhooks.gunicorn"], ["-k", "forkhooks.workers.SyncWorker"]])
def test_an_invalid_pool_option_stops_the_master_with_a_message_naming_it(
    dsn: str, tmp_path: Path, args: list[str]
) -> None:
    """OPTIONS['pool'] with a misspelt key: every request would fail, so gunicorn exits at once, saying why."""
    server = Server(
        gunicorn(*args, WSGI),
        dsn,
        tmp_path,
        env={"FORKHOOKS_EXAMPLE_POOL_OPTIONS": '{"max_sise": 4}', "FORKHOOKS_EXAMPLE_STARTUP_QUERY": "0"},
    )
    try:
        code = server.proc.wait(60)
    finally:
        server.kill()
    log = server.log()
    assert code != 0
    assert "forkhooks: DATABASES['default']['OPTIONS']['pool'] is invalid: TypeError" in log
    assert "max_sise" in log
    assert "Booting worker" not in log


@pytest.mark.e2e
@pytest.mark.parametrize("args", [["-c", "python:forkhooks.gunicorn"], ["-k", "forkhooks.workers.SyncWorker"]])
def test_gc_freeze_option_freezes_the_master_once_before_forking(dsn: str, tmp_path: Path, args: list[str]) -> None:
    """FORKHOOKS_GC_FREEZE=1: the master logs the objects it froze before its first fork; workers answer right."""
    server = serve(dsn, tmp_path, args, WSGI, env={"FORKHOOKS_GC_FREEZE": "1"})
    try:
        results = loadgen.run(server.target, 200, concurrency=16)
    finally:
        server.stop()
    frozen = [line for line in server.log().splitlines() if "objects (gc.freeze) before forking" in line]
    assert len(frozen) == 1, server.log()[-3000:]
    assert int(frozen[0].split(" froze ")[1].split()[0]) > 10_000, frozen  # Django and the app, loaded by --preload
    assert (results.requests, results.failed, results.wrong) == (200, 0, 0), results.summary()


@pytest.mark.e2e
def test_without_the_gc_freeze_option_nothing_is_frozen(dsn: str, tmp_path: Path) -> None:
    """The default: no freeze (it is an option)."""
    server = serve(dsn, tmp_path, ["-c", "python:forkhooks.gunicorn"], WSGI)
    server.stop()
    assert "gc.freeze" not in server.log()
