"""System checks of forkhooks.django: settings that lose connections or rows across fork.

W001 and W002 read settings only (tag "forkhooks", run by every `manage.py check`);
W003/I001 reads the server's limits, so it is a database check (`check --database default`).
"""

from __future__ import annotations

import os
import sys
from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Info, Tags, register
from django.core.checks import Warning as CheckWarning

from .._core import djangodb as _django
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
    return "forkhooks.gunicorn" in sys.modules or "forkhooks._workers" in sys.modules


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


@register(Tags.database)
def connection_budget(app_configs: Any = None, databases: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """I001/W003: the connection budget, with `manage.py check --database default` (it connects once)."""
    if not databases:
        return []
    workers = int(os.environ.get("WEB_CONCURRENCY") or 1)
    threads = int(os.environ.get("FORKHOOKS_THREADS") or 1)
    messages: list[CheckMessage] = []
    for budget in _budget.check(workers, threads):
        hint = "Workers from WEB_CONCURRENCY, threads from FORKHOOKS_THREADS; `forkhooks check` takes them as options."
        if budget.over:
            messages.append(CheckWarning(f"connection budget {budget}", hint=budget.fix(), id="forkhooks.W003"))
        else:
            messages.append(Info(f"connection budget {budget}", hint=hint, id="forkhooks.I001"))
    return messages
