"""System checks of forkhooks.django: settings that lose connections or rows across fork.

E001, W001 and W002 read settings only (tag "forkhooks", run by every `manage.py check`);
W003/I001/W004 read the server's limits, so they are database checks (`check --database default`,
and `migrate`, which runs them too: there only W003 and W004 speak, I001 is for `check`).
"""

from __future__ import annotations

import sys
from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Error, Info, Tags, register
from django.core.checks import Warning as CheckWarning

from .._core import djangodb as _django
from .._core import settings as _settings
from .._tools import budget as _budget


def _persistent_aliases() -> list[str]:
    return [a for a, db in _django.database_settings().items() if db.get("CONN_MAX_AGE", 0) != 0]


@register("forkhooks")
def asgi_persistent_connections(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """W001: CONN_MAX_AGE != 0 under ASGI, where Django's docs say to pool instead."""
    asgi = bool(getattr(settings, "ASGI_APPLICATION", None)) or "django.core.handlers.asgi" in sys.modules
    aliases = _persistent_aliases()
    if not (asgi and aliases):
        return []
    return [
        CheckWarning(
            f"CONN_MAX_AGE is not 0 for {', '.join(map(repr, aliases))} in an ASGI application",
            hint="Under ASGI each request may run in another thread, so persistent connections pile up. "
            "Set CONN_MAX_AGE = 0 and turn pooling on: OPTIONS = {'pool': {...}} (Django >= 5.1).",
            id="forkhooks.W001",
        )
    ]


def _server() -> str | None:
    if "uwsgi" in sys.modules:
        return "uwsgi"
    if "gunicorn.arbiter" in sys.modules:
        return "gunicorn"
    return None


def _hooks_active(server: str) -> bool:
    if server == "uwsgi":
        # uWSGI forks from C: os.register_at_fork callbacks run only with this option.
        options = getattr(sys.modules["uwsgi"], "opt", {}) or {}
        return "forkhooks.uwsgi" in sys.modules or any(
            k in options for k in (b"py-call-osafterfork", "py-call-osafterfork")
        )
    return any(module in sys.modules for module in _GUNICORN_MODULES)


# Loaded in a gunicorn process only when the hooks module is the config, or a worker class of
# forkhooks.workers (-k forkhooks.workers.SyncWorker, ...) runs it.
_GUNICORN_MODULES = (
    "forkhooks.gunicorn",
    "forkhooks.workers",
    "forkhooks._adapters.workers",
    "forkhooks._adapters.asgi",
    "forkhooks._adapters.uvicorn",
    "forkhooks._adapters.gevent",
)


@register("forkhooks")
def pool_options(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """E001: an OPTIONS['pool'] that cannot build a pool; building one opens no connection."""
    return [
        Error(
            problem,
            hint="Every request would fail with it, so a gunicorn or uWSGI master with forkhooks refuses to start. "
            "OPTIONS['pool'] takes psycopg_pool.ConnectionPool's arguments (min_size, max_size, timeout, ...).",
            id="forkhooks.E001",
        )
        for problem in _django.try_building_pools()
    ]


@register("forkhooks")
def pooling_without_hooks(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """W002: Django pooling under gunicorn/uWSGI while forkhooks' hooks are not active."""
    server = _server()
    if server is None or not _django.pooled_aliases() or _hooks_active(server):
        return []
    fix = {
        "gunicorn": "add `from forkhooks.gunicorn import *` to gunicorn.conf.py, or run with "
        "-k forkhooks.workers.SyncWorker (or ThreadWorker, ASGIWorker, UvicornWorker)",
        "uwsgi": "add `import = forkhooks.uwsgi` to the uWSGI ini file",
    }[server]
    return [
        CheckWarning(
            f"Django pooling is on under {server} but forkhooks' {server} hooks are not active: "
            "the master keeps its pool and workers may share its sockets",
            hint=f"To fix it, {fix}.",
            id="forkhooks.W002",
        )
    ]


def _count(name: str, messages: list[CheckMessage]) -> int:
    """A whole number >= 1 from the environment; a bad value is a W004 and counts as 1."""
    value, bad = _settings.count(name)
    if bad is not None:
        messages.append(
            CheckWarning(
                f"{name}={bad!r} is not a whole number >= 1; the connection budget uses the default, 1",
                hint=f"Set {name} to a positive whole number, or unset it.",
                id="forkhooks.W004",
            )
        )
    return value


def _check_command_runs() -> bool:
    """True when `manage.py check` (or call_command("check")) runs these checks.

    Django passes the same arguments to database checks from `check --database` and from
    `migrate`; only the calling command tells them apart.
    """
    command = sys.modules.get("django.core.management.commands.check")
    if command is None:
        return False
    frame = sys._getframe(1)
    while frame is not None:
        if isinstance(frame.f_locals.get("self"), command.Command):
            return True
        frame = frame.f_back  # type: ignore[assignment]
    return False


@register(Tags.database)
def connection_budget(app_configs: Any = None, databases: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """W003 over budget, wherever database checks run; I001 within budget, with `manage.py check --database`."""
    if not databases:
        return []
    messages: list[CheckMessage] = []
    workers = _count(_settings.WORKERS, messages)
    threads = _count(_settings.THREADS, messages)
    asked = _check_command_runs()
    for budget in _budget.check(workers, threads):
        hint = "Workers from WEB_CONCURRENCY, threads from FORKHOOKS_THREADS; `forkhooks check` takes them as options."
        if budget.over:
            messages.append(CheckWarning(f"connection budget {budget}", hint=budget.fix(), id="forkhooks.W003"))
        elif asked:
            messages.append(Info(f"connection budget {budget}", hint=hint, id="forkhooks.I001"))
    return messages
