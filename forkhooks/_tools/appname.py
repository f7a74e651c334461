"""Name each process's new connections after its role, pid and host, so the server shows who holds each backend.

A name is ``<prefix>:<role>:<pid>@<host>``. The host part tells machines (and
containers, which have their own pid namespace) apart: pids repeat across
them, and a supervisor that cancels the queries of "worker 4711" must never
touch another machine's worker 4711 on the same database.
"""

from __future__ import annotations

import base64
import hashlib
import os
import socket
import uuid
from enum import StrEnum
from typing import Any, NamedTuple, TypeGuard

from .._core import djangodb as _django
from .._core import settings as _settings
from .._core.procs import alive as alive  # re-exported: the adapters' name for it

# PostgreSQL keeps NAMEDATALEN - 1 = 63 bytes of application_name.
MAX_LENGTH = 63
DEFAULT_PREFIX = "forkhooks"
HOST_LENGTH = 8  # base32 characters: 40 bits

# The names the user chose, captured before forkhooks changed anything; a
# child inherits them, so every generation keeps the user's prefix.
_user_names: dict[str, Any] = {}
_user_env: list[str | None] = []
_host: list[str] = []


class Owner(NamedTuple):
    """The process a name made by compose() stands for."""

    prefix: str
    role: str
    pid: int
    host: str | None  # None for a name an older forkhooks made: never acted on


def enabled(log: _settings.Warns | None = None) -> bool:
    """FORKHOOKS_APPLICATION_NAME (default on): label connections with role, pid and host."""
    return _settings.application_name_enabled(log)


def _read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return ""


def host_token() -> str:
    """This host's (and pid namespace's) short token: the same for every process that can see the same pids.

    Linux: the kernel's boot id (random at each boot) and the pid namespace's
    inode, so two machines, or two containers on one machine, never share it
    (but for a 1 in 2**40 chance). Elsewhere: the MAC-based node id and the host name.
    """
    if not _host:
        try:
            pidns = str(os.stat("/proc/self/ns/pid").st_ino)
        except OSError:
            pidns = ""
        boot = _read("/proc/sys/kernel/random/boot_id")
        source = f"{boot}:{pidns}" if boot else f"{uuid.getnode()}:{socket.gethostname()}"
        digest = hashlib.sha256(source.encode()).digest()
        _host.append(base64.b32encode(digest).decode().lower()[:HOST_LENGTH])
    return _host[0]


def suffix(role: str, pid: int, host: str | None = None) -> str:
    """The end of every name compose() makes for this role and pid: `:<role>:<pid>@<host>`."""
    return f":{role.replace(' ', '-')}:{pid}@{host or host_token()}"


def compose(prefix: str | None, role: str, pid: int, host: str | None = None) -> str:
    """`<prefix>:<role>:<pid>@<host>`, the prefix cut so the rest always fits in 63 bytes."""
    tail = suffix(role, pid, host)
    head = (prefix or DEFAULT_PREFIX).encode()[: MAX_LENGTH - len(tail.encode())]
    return head.decode(errors="ignore") + tail


def parse(name: str) -> Owner | None:
    """The owner named by compose() (or by an older forkhooks, without a host), None for any other name."""
    rest, at, host = name.rpartition("@")
    if not at or not host.isalnum():
        rest, host = name, ""
    prefix, sep, pid = rest.rpartition(":")
    head, sep2, role = prefix.rpartition(":")
    if not (sep and sep2 and pid.isdigit() and role):
        return None
    return Owner(head, role, int(pid), host or None)


def ours(owner: Owner | None) -> TypeGuard[Owner]:
    """True when the name was made on this host (or in this container): its pid is one of ours."""
    return owner is not None and owner.host == host_token()


class Role(StrEnum):
    """Every role a process takes under forkhooks: one spelling, in its log lines and in its connections' names.

    A name spells it with hyphens (``celery worker`` -> ``<prefix>:celery-worker:<pid>@<host>``).
    """

    MASTER = "master"  # gunicorn's arbiter, uWSGI's master: supervises, holds no backend
    WORKER = "worker"  # gunicorn's and uWSGI's workers
    CHILD = "child"  # uWSGI's mules and spooler
    FORKED_CHILD = "forked child"  # any other fork (os.fork, multiprocessing)
    DIRTY_ARBITER = "dirty arbiter"
    DIRTY_WORKER = "dirty worker"
    # A supervisor's own short connections (ending or cancelling a child's queries): they last a
    # moment, and a look at pg_stat_activity then tells them from a backend the process holds.
    SUPERVISOR = "supervisor"
    CELERY_MAIN = "celery main"
    CELERY_WORKER = "celery worker"
    RQ_WORKER = "rq worker"
    RQ_HORSE = "rq horse"
    RQ_POOL = "rq pool"
    HUEY_CONSUMER = "huey consumer"
    HUEY_WORKER = "huey worker"
    Q2_SUPERVISOR = "django-q2 supervisor"
    Q2_WORKER = "django-q2 worker"
    SCHEDULER_WORKER = "scheduler worker"
    SCHEDULER_JOB = "scheduler job"

    @property
    def token(self) -> str:
        """The role as a connection name spells it."""
        return self.value.replace(" ", "-")


def for_this_process(role: str, current: str | None = None) -> str:
    """The name compose() gives this process in `role`, keeping the prefix of `current` (or of PGAPPNAME)."""
    base = current or (_user_env[0] if _user_env else os.environ.get("PGAPPNAME"))
    owner = parse(base) if base else None  # a name of ours already: keep only its prefix
    return compose(owner.prefix if owner else base, role, os.getpid())


def label(role: str, log: _settings.Warns | None = None) -> str | None:
    """Make this process's future connections carry `<prefix>:<role>:<pid>@<host>`; returns the name."""
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
