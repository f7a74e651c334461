"""See the bug and the fix: the demo's Django project under real gunicorn, twice.

The same concurrent load goes to gunicorn (--preload, Django pooling on)
without forkhooks, then with it, and one before/after table is printed.

With no --dsn and FORKHOOKS_DSN unset, a throw-away embedded PostgreSQL is
started and deleted on exit. Exit code 0 when the run with forkhooks is clean
(no failed request, no wrong row, every worker served), 1 otherwise.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import os
import signal
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from .._core import settings as _settings
from . import loadgen
from .process import ServerProcess, children
from .report import Outcome, Progress, Sampler, table

HELP = "run the example app under gunicorn without and with forkhooks, print a before/after table"

EPILOG = """exit status:
  0    the run with forkhooks was clean (no failed request, no wrong row, every worker served)
  1    it was not
  2    usage error, or a package the demo needs is missing
  130  interrupted (Ctrl-C or SIGTERM); gunicorn stopped and temporary files removed"""

WSGI = "forkhooks.demo.site.wsgi:application"
ASGI = "forkhooks.demo.site.asgi:application"


@dataclass(frozen=True)
class Kind:
    """How one --worker-class is run without forkhooks and with it."""

    control: str
    forkhooks: str  # the matching forkhooks.workers class: no conf file needed
    app: str
    extra: tuple[str, ...] = ()
    needs: str = ""  # a module the worker class imports
    # Without forkhooks its requests mostly hang to the per-request timeout (threads or an event loop wait
    # on the inherited pool): the run stops once the failure is proven instead of waiting out 2000 of them.
    bounded_control: bool = False


KINDS = {
    "sync": Kind("sync", "forkhooks.workers.SyncWorker", WSGI),
    "gthread": Kind("gthread", "forkhooks.workers.ThreadWorker", WSGI, ("--threads", "4"), bounded_control=True),
    "asgi": Kind("asgi", "forkhooks.workers.ASGIWorker", ASGI),
    "uvicorn": Kind(
        "uvicorn_worker.UvicornWorker",
        "forkhooks.workers.UvicornWorker",
        ASGI,
        needs="uvicorn_worker",
        bounded_control=True,
    ),
}

# Without forkhooks a request can hang to the pool's timeout (an inherited pool
# has no threads in the child): a short per-request bound keeps the control run,
# and so the whole demo, within a minute or two.
CONTROL_TIMEOUT = 5.0
# A bounded control run stops at this many failed requests (or the first wrong row): the failure is proven.
CONTROL_PROOF = 128
FORKHOOKS_TIMEOUT = 15.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The demo's options."""
    parser.add_argument(
        "--worker-class",
        choices=sorted(KINDS),
        default="sync",
        help="gunicorn worker class (sync; uvicorn needs pip install 'forkhooks[uvicorn]')",
    )
    parser.add_argument("--workers", type=_positive, default=4, help="gunicorn workers (4)")
    parser.add_argument("--requests", type=_positive, default=2000, help="requests per run (2000)")
    parser.add_argument("--concurrency", type=_positive, default=64, help="requests in flight (64)")
    parser.add_argument("--dsn", help="PostgreSQL to use (default: $FORKHOOKS_DSN, else an embedded one)")


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def package_root() -> Path:
    """The directory forkhooks is imported from (site-packages, or a checkout)."""
    import forkhooks

    return Path(forkhooks.__file__).resolve().parent.parent


def run(args: argparse.Namespace) -> int:
    """Run the demo; the exit code says whether the run with forkhooks was clean."""
    kind = KINDS[args.worker_class]
    missing = [m for m in ("django", "gunicorn", "psycopg", "psycopg_pool", kind.needs) if m and not _importable(m)]
    if missing:
        _say(f"forkhooks demo: missing {', '.join(missing)}: pip install 'forkhooks[demo]' (uvicorn: [uvicorn])")
        return 2
    # SIGTERM takes the same way out as Ctrl-C, so both clean up.
    signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        with contextlib.ExitStack() as stack:
            dsn = args.dsn or _settings.server_dsn() or stack.enter_context(_embedded())
            tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="forkhooks-demo-")))
            without = _one_run("without forkhooks", kind.control, kind, args, dsn, tmp)
            with_ = _one_run("with forkhooks", kind.forkhooks, kind, args, dsn, tmp)
    except KeyboardInterrupt:
        _say("\nforkhooks demo: interrupted; gunicorn stopped and temporary files removed")
        return 130
    print(table(without, with_, args.workers))
    clean = (with_.results.failed, with_.results.wrong, len(with_.results.pids)) == (0, 0, args.workers)
    print(
        f"\nwith forkhooks: {'clean' if clean else 'NOT clean'} "
        f"({with_.results.failed} failed, {with_.results.wrong} wrong, "
        f"{len(with_.results.pids)}/{args.workers} workers served)"
    )
    return 0 if clean else 1


def _one_run(label: str, worker_class: str, kind: Kind, args: argparse.Namespace, dsn: str, tmp: Path) -> Outcome:
    from psycopg.conninfo import make_conninfo

    # A per-run application_name lets the sampler count this run's backends
    # only, even on a shared server or with leftovers of the previous run.
    app_name = "forkhooks-demo-" + ("on" if worker_class.startswith("forkhooks.") else "off")
    argv = [
        sys.executable, "-m", "gunicorn", "--preload", "-w", str(args.workers), "-k", worker_class, *kind.extra,
        "-b", f"unix:{tmp / 'app.sock'}", "--graceful-timeout", "5", kind.app,
    ]  # fmt: skip
    _say(f"{label}: gunicorn {' '.join(argv[3:])}")
    # gunicorn in its own session: a terminal's Ctrl-C reaches the demo, which stops it in order.
    server = ServerProcess(
        argv,
        cwd=tmp,
        env=_env(make_conninfo(dsn, application_name=app_name)),
        log_path=tmp / "app.log",
        target=f"unix:{tmp / 'app.sock'}",
    )
    with contextlib.ExitStack() as stack:
        stack.callback(_shielded, server.kill)
        # gunicorn spawns workers up to 0.1 s apart: wait for all, or a short run misses the last one.
        server.wait_ready(timeout=60, also=lambda: len(children(server.pid)) == args.workers)
        sampler = stack.enter_context(Sampler(dsn, app_name, server.pid))
        progress = Progress(label, args.requests)
        control = not worker_class.startswith("forkhooks.")
        timeout = CONTROL_TIMEOUT if control else FORKHOOKS_TIMEOUT
        stop_when = loadgen.proven(failed=CONTROL_PROOF) if control and kind.bounded_control else None
        try:
            results = loadgen.run(
                server.target,
                args.requests,
                concurrency=args.concurrency,
                timeout=timeout,
                progress=progress,
                stop_when=stop_when,
            )
        finally:
            progress.finish()
        if stop_when is not None and results.requests < args.requests:
            _say(
                f"{label}: stopped after {results.requests} of {args.requests} requests, the failure proven "
                f"({results.failed} failed, {results.wrong} wrong); the rest would each wait {timeout:g} s"
            )
        sampler.stop()
        with contextlib.suppress(TimeoutError):  # stop() has killed what was left; the table still matters
            server.stop(timeout=15)
        left = sampler.left_after_shutdown(timeout=3)
    return Outcome(results, sampler.backends_max, left, sampler.master_max)


def _env(dsn: str) -> dict[str, str]:
    env = dict(
        os.environ, FORKHOOKS_DSN=dsn, PYTHONUNBUFFERED="1", DJANGO_SETTINGS_MODULE="forkhooks.demo.site.settings"
    )
    # gunicorn imports the demo's project from wherever this forkhooks came from,
    # an installed wheel or a checkout that is not installed.
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(package_root()), env.get("PYTHONPATH")) if p)
    return env


@contextlib.contextmanager
def _embedded() -> Iterator[str]:
    from .embedded import EmbeddedPostgres

    _say("starting an embedded PostgreSQL (deleted on exit)")
    server = EmbeddedPostgres()
    try:
        yield server.dsn
    finally:
        _shielded(server.stop)


def _shielded(cleanup: object) -> None:
    """Run a cleanup step with Ctrl-C ignored, so a second Ctrl-C cannot leave things half-stopped."""
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        cleanup()  # type: ignore[operator]
    finally:
        signal.signal(signal.SIGINT, previous)


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _importable(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)
