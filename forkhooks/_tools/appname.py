"""Name each process's new connections after its role and pid, so the server shows who holds each backend."""

from __future__ import annotations

import os
from typing import Any

from .._core import djangodb as _django
from .._core import settings as _settings

# PostgreSQL keeps NAMEDATALEN - 1 = 63 bytes of application_name.
MAX_LENGTH = 63
DEFAULT_PREFIX = "forkhooks"

# The names the user chose, captured before forkhooks changed anything; a
# child inherits them, so every generation keeps the user's prefix.
_user_names: dict[str, Any] = {}
_user_env: list[str | None] = []


def enabled(log: _settings.Warns | None = None) -> bool:
    """FORKHOOKS_APPLICATION_NAME (default on): label connections with role and pid."""
    return _settings.application_name_enabled(log)


def compose(prefix: str | None, role: str, pid: int) -> str:
    """`<prefix>:<role>:<pid>`, the prefix cut so the pid always fits in 63 bytes."""
    suffix = f":{role.replace(' ', '-')}:{pid}"
    head = (prefix or DEFAULT_PREFIX).encode()[: MAX_LENGTH - len(suffix.encode())]
    return head.decode(errors="ignore") + suffix


def parse(name: str) -> tuple[str, str, int] | None:
    """(prefix, role, pid) of a name made by compose(), None for any other name."""
    prefix, sep, rest = name.rpartition(":")
    head, sep2, role = prefix.rpartition(":")
    if not (sep and sep2 and rest.isdigit()):
        return None
    return head, role, int(rest)


def label(role: str, log: _settings.Warns | None = None) -> str | None:
    """Make this process's future connections carry `<prefix>:<role>:<pid>`; returns the name."""
    if not enabled(log):
        return None
    pid = os.getpid()
    if not _user_env:
        _user_env.append(os.environ.get("PGAPPNAME"))
    name = compose(_user_env[0], role, pid)
    # libpq reads PGAPPNAME for every connection that names no application_name
    # itself: psycopg 3, psycopg2, SQLAlchemy and user pools all get it.
    os.environ["PGAPPNAME"] = name
    for alias, db in _django.database_settings().items():
        options = db.setdefault("OPTIONS", {})
        if alias not in _user_names:
            _user_names[alias] = options.get("application_name")
        if _user_names[alias]:  # the user's own name in OPTIONS wins over PGAPPNAME: keep it as prefix
            options["application_name"] = compose(str(_user_names[alias]), role, pid)
    return name
