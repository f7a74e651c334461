"""MySQL/MariaDB drivers (mysqlclient's MySQLdb, PyMySQL): is a query running, and cancel it the MySQL way.

MySQL has no cancel request on the side like PostgreSQL's: a running statement is
stopped by `KILL QUERY <thread id>` sent over another connection. Neither driver
says whether a statement is in progress, so "running" means: some thread is
inside the driver, working for this connection, right now.
"""

from __future__ import annotations

import ipaddress
import json
import math
import os
import socket
import sys
import tempfile
import threading
import time
import weakref
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

from . import settings as _settings
from .procs import alive, start_time
from .sockets import socket_fd

_DRIVERS = ("MySQLdb", "pymysql")

# Each connection's server thread id, noted when it connected: mysqlclient (>= 2.3) locks a
# connection for every call, thread_id() included, so a query running in another thread
# would make asking for it then fail ("already in use from another thread").
_thread_ids: weakref.WeakKeyDictionary[Any, int] = weakref.WeakKeyDictionary()


def is_mysql(conn: Any) -> bool:
    """Whether `conn` is a mysqlclient or PyMySQL connection (PyMySQL installed as MySQLdb too)."""
    return type(conn).__module__.split(".", 1)[0] in _DRIVERS


def remember(conn: Any, params: dict[str, Any] | None = None) -> None:
    """Note a new MySQL connection's server thread id (one C call), for a KILL QUERY later.

    With `params` (the driver's connect arguments) it also goes into this process's registry file,
    for the supervisor that ends its queries if it dies.
    """
    if not is_mysql(conn):
        return
    _thread_ids[conn] = int(conn.thread_id())
    if params is not None:
        try:
            _entries[conn] = (os.getpid(), _entry(conn, params))
            write_registry()
        except Exception as exc:  # the registry is for a supervisor later: never a reason to fail a connect
            _say_once(f"forkhooks: MySQL registry of process {os.getpid()} not written ({type(exc).__name__}: {exc})")


def busy(conn: Any) -> bool:
    """Whether some thread's stack is inside the driver for `conn` (a query or a fetch in progress).

    This sees the interrupted request under a signal handler in the same thread (PyMySQL
    reads in Python, so gunicorn's worker_abort runs mid-query) and other threads' requests
    (gthread workers). mysqlclient blocks in C: its own thread's handler runs only after the query.
    """
    for top in list(sys._current_frames().values()):
        frame: FrameType | None = top
        while frame is not None:
            module = frame.f_globals.get("__name__", "")
            if module.split(".", 1)[0] in _DRIVERS:
                owner = frame.f_locals.get("self")
                # the connection itself, a cursor of it, or PyMySQL's MySQLResult being read
                if owner is conn or getattr(owner, "connection", None) is conn:
                    return True
            frame = frame.f_back
    return False


def kill_query(wrapper: Any, conn: Any, timeout: float) -> None:
    """Send KILL QUERY for `conn`'s session over one short connection built from `wrapper`'s settings.

    Bounded: connect, read and write timeouts (whole seconds, as both drivers take them).
    """
    thread_id = _thread_ids.get(conn)
    if thread_id is None:  # connected before forkhooks watched: PyMySQL answers without a lock
        thread_id = int(conn.thread_id())
    seconds = max(1, math.ceil(timeout))
    params = dict(wrapper.get_connection_params())
    params.update(connect_timeout=seconds, read_timeout=seconds, write_timeout=seconds)
    killer = wrapper.Database.connect(**params)
    try:
        cursor = killer.cursor()
        cursor.execute(f"KILL QUERY {thread_id}")
        cursor.close()
    finally:
        killer.close()


# -- the registry: the sessions a process holds, for the supervisor that ends them if it dies ---------
#
# MySQL has no per-connection name a supervisor could find its child's sessions by (PostgreSQL's
# application_name): mysqlclient cannot send connection attributes, and MariaDB shows them only with
# performance_schema on. So each process writes, at each connect (never per query), a small
# file listing its live sessions: `<tmp>/forkhooks-<uid>/mysql/<pid>`. The supervisor reads the file of
# a child it kills or saw die, and acts only on what the server proves to be that session.


@dataclass(frozen=True)
class Entry:
    """One session as its process recorded it at connect."""

    thread_id: int
    host: str
    port: int
    unix_socket: str
    user: str
    database: str
    connected_at: float  # wall clock (time.time()) right after the connect
    client: tuple[str, int] | None = None  # TCP: this end's address and port (getsockname)
    peer_port: int | None = None  # TCP: the server's port, as this end is connected to it

    @property
    def server(self) -> tuple[str, int, str]:
        """The server as the connect arguments named it (compared with an alias's own)."""
        return (self.host, self.port, self.unix_socket)


# conn -> (the pid that connected it, its entry): a forked child inherits the dict, never writes its parent's.
_entries: weakref.WeakKeyDictionary[Any, tuple[int, Entry]] = weakref.WeakKeyDictionary()
_said: set[str] = set()
_pruned_in: list[int] = []

# A dead process's file is removed when another process of this user writes its own for the first time
# (one directory scan per process), once no supervisor can want it: its parent (the supervisor of a
# gunicorn worker, a Celery pool process, an RQ horse) is gone too, or the file is older than this. A
# supervisor reads the file within moments of the death (it reaps, then acts), so a long-lived child
# with a live parent keeps its file that long; a plain os.fork child that exits without forkhooks'
# close leaves its file until then (it is a few hundred bytes; a later process with its pid overwrites it).
STALE_AFTER = 86400.0


def _say_once(line: str) -> None:
    if line not in _said:
        _said.add(line)
        _settings.log.warning(line)


def server_of(params: dict[str, Any]) -> tuple[str, int, str]:
    """(host, port, unix socket) from connect arguments (Django's get_connection_params()), normalized."""
    return (str(params.get("host") or ""), int(params.get("port") or 0), str(params.get("unix_socket") or ""))


def _entry(conn: Any, params: dict[str, Any]) -> Entry:
    host, port, unix_socket = server_of(params)
    client: tuple[str, int] | None = None
    peer_port: int | None = None
    fd = socket_fd(conn)
    if fd is not None:
        with socket.socket(fileno=os.dup(fd)) as sock:
            if sock.family in (socket.AF_INET, socket.AF_INET6):
                local = sock.getsockname()
                client = (str(local[0]), int(local[1]))
                peer_port = int(sock.getpeername()[1])
    return Entry(
        thread_id=_thread_ids[conn],
        host=host,
        port=port,
        unix_socket=unix_socket,
        user=str(params.get("user") or ""),
        database=str(params.get("database") or params.get("db") or ""),
        connected_at=time.time(),
        client=client,
        peer_port=peer_port,
    )


def registry_dir(uid: int | None = None) -> Path:
    """Where processes of user `uid` (this one's by default) list their MySQL sessions."""
    return Path(tempfile.gettempdir()) / f"forkhooks-{os.getuid() if uid is None else uid}" / "mysql"


def _private(path: Path, uid: int) -> bool:
    """`path` is a real directory of `uid`'s that no one else can write: its files can be trusted."""
    try:
        st = os.lstat(path)
    except OSError:
        return False
    return st.st_uid == uid and (st.st_mode & 0o170000) == 0o040000 and not st.st_mode & 0o022


def _own_dir() -> Path:
    """This user's registry directory, created 0700 on demand; refused if someone else made it.

    Checked once per process (and again if it disappears: a tmp cleaner may remove it).
    """
    folder = registry_dir()
    key = (os.getpid(), str(folder))
    if key in _checked:
        return folder
    if not folder.is_dir():
        os.makedirs(folder, mode=0o700, exist_ok=True)
    uid = os.getuid()
    if not (_private(folder.parent, uid) and _private(folder, uid)):
        raise PermissionError(f"{folder} is not a private directory of uid {uid}")
    _checked.add(key)
    return folder


_checked: set[tuple[int, str]] = set()


def _is_open(conn: Any) -> bool:
    return bool(getattr(conn, "open", True))  # mysqlclient: an int; PyMySQL: a property


def live_entries() -> list[Entry]:
    """This process's sessions still open, as its registry file lists them (none a parent opened)."""
    pid = os.getpid()
    return [entry for conn, (owner, entry) in list(_entries.items()) if owner == pid and _is_open(conn)]


# One writer at a time (gthread's request threads connect concurrently): the last file written is the
# latest list. A child gets a fresh lock: another thread may have held this one at the fork.
_writing = threading.Lock()
os.register_at_fork(after_in_child=lambda: globals().__setitem__("_writing", threading.Lock()))


def write_registry() -> None:
    """(Re)write this process's registry file with its live sessions (tmp file + rename); none: remove it."""
    if not _writing.acquire(timeout=5):  # never expected: a writer stuck on a full or hung file system
        raise TimeoutError("another thread has been writing the registry for 5 s")
    try:
        _write_registry()
    finally:
        _writing.release()


def _write_registry() -> None:
    pid = os.getpid()
    entries = live_entries()
    folder = _own_dir()
    path = folder / str(pid)
    if not entries:
        path.unlink(missing_ok=True)
        return
    parent = os.getppid()
    record = {
        "pid": pid,
        "started": _own_start(pid),
        "parent": parent,
        "parent_started": start_time(parent),
        "connections": [dict(vars(e)) for e in entries],
    }
    data = json.dumps(record).encode()
    tmp = folder / f".{pid}.tmp"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    except FileNotFoundError:  # the directory went (a tmp cleaner): make it again
        _checked.discard((pid, str(folder)))
        folder = _own_dir()
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)
    # Not os.replace() over the old file: ext4 (auto_da_alloc) then flushes the new file's data at
    # once, ~1 ms on every connect (measured), twice a connect's own cost. Unlink, then rename: a
    # reader sees the old list, none (for microseconds: only a live child's supervisor can look then,
    # and cancels nothing), or the new one, never a torn file.
    path.unlink(missing_ok=True)
    os.rename(tmp, path)
    if not _pruned_in or _pruned_in[0] != pid:
        _pruned_in[:] = [pid]
        _prune(folder)


def forget_registry() -> None:
    """After a close: rewrite this process's file without the sessions it closed (removed when none is left)."""
    try:
        if any(owner == os.getpid() for owner, _ in list(_entries.values())):
            write_registry()
    except Exception as exc:
        _say_once(f"forkhooks: MySQL registry of process {os.getpid()} not updated ({type(exc).__name__}: {exc})")


def _prune(folder: Path) -> None:
    """Remove the files of dead processes no supervisor can want (see STALE_AFTER)."""
    now = time.time()
    for item in os.scandir(folder):
        name = item.name.removeprefix(".").removesuffix(".tmp")  # a writer's tmp file, left by a death mid-write
        if not name.isdigit() or alive(int(name)):
            continue
        if item.name != name:
            _unlink(item.path)
            continue
        try:
            if now - item.stat(follow_symlinks=False).st_mtime > STALE_AFTER or not _parent_lives(item.path):
                os.unlink(item.path)
        except OSError:
            continue


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def _parent_lives(path: str) -> bool:
    """Whether the parent a registry file names is still that process (a supervisor that may read it)."""
    try:
        with open(path) as f:
            record = json.load(f)
        parent, started = int(record["parent"]), record.get("parent_started")
    except (OSError, ValueError, KeyError, TypeError):
        return False  # not a file this forkhooks writes: no one reads it
    return parent > 1 and alive(parent) and (started is None or started == start_time(parent))


_own: list[tuple[int, int | None]] = []


def _own_start(pid: int) -> int | None:
    """start_time() of this process, read once per process."""
    if not _own or _own[0][0] != pid:
        _own[:] = [(pid, start_time(pid))]
    return _own[0][1]


@dataclass(frozen=True)
class Registry:
    """What one process's file says: its pid, its start time, its sessions."""

    pid: int
    started: int | None
    entries: list[Entry]
    path: Path | None = None


def read_registry(pid: int) -> Registry | None:
    """Process `pid`'s registry file (this user's, or the live process's user's), None when absent or unreadable."""
    uids = [os.getuid()]
    try:
        owner = os.stat(f"/proc/{pid}").st_uid
        if owner not in uids:
            uids.append(owner)
    except OSError:
        pass
    for uid in uids:
        folder = registry_dir(uid)
        if not (_private(folder.parent, uid) and _private(folder, uid)):
            continue
        try:
            with open(folder / str(pid)) as f:
                found = parse_registry(json.load(f), pid)
        except (OSError, ValueError):
            continue
        if found is not None:
            return Registry(found.pid, found.started, found.entries, folder / str(pid))
    return None


def parse_registry(record: Any, pid: int) -> Registry | None:
    """A registry file's JSON as a Registry; None for one that is not a valid file of `pid`."""
    if not isinstance(record, dict) or record.get("pid") != pid or not isinstance(record.get("connections"), list):
        return None
    entries = []
    for raw in record["connections"]:
        try:
            client = raw.get("client")
            entries.append(
                Entry(
                    thread_id=int(raw["thread_id"]),
                    host=str(raw["host"]),
                    port=int(raw["port"]),
                    unix_socket=str(raw["unix_socket"]),
                    user=str(raw["user"]),
                    database=str(raw.get("database", "")),
                    connected_at=float(raw["connected_at"]),
                    client=(str(client[0]), int(client[1])) if client else None,
                    peer_port=None if raw.get("peer_port") is None else int(raw["peer_port"]),
                )
            )
        except (KeyError, TypeError, ValueError, IndexError, AttributeError):
            continue  # one bad entry: the others still count
    started = record.get("started")
    return Registry(pid, started if isinstance(started, int) else None, entries)


def remove_registry(registry: Registry) -> None:
    """Remove the file `registry` was read from (its process gone, its sessions ended)."""
    if registry.path is not None:
        registry.path.unlink(missing_ok=True)


# -- the proof a supervisor asks of a session before it acts on it ------------------------------------

# A session recorded less than this after the server's computed start is not acted on: Uptime counts
# whole seconds, and the two clocks (this host's, the server's) may differ a little.
START_TOLERANCE = 1.0


def server_started(cursor: Any) -> float:
    """When the server behind `cursor` started, on its own clock (now - Uptime, in epoch seconds)."""
    cursor.execute("SHOW GLOBAL STATUS LIKE 'Uptime'")
    uptime = int(cursor.fetchone()[1])
    cursor.execute("SELECT UNIX_TIMESTAMP(NOW(6))")
    return float(cursor.fetchone()[0]) - uptime


class Session:
    """A PROCESSLIST row: the session's user, client HOST (host:port over TCP), COMMAND."""

    __slots__ = ("command", "host", "user")

    def __init__(self, user: str, host: str, command: str) -> None:
        self.user, self.host, self.command = user, host, command


def _ip(text: str) -> str | None:
    try:
        ip = ipaddress.ip_address(text.strip("[]"))
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    return str(ip)


def unproven(entry: Entry, session: Session | None, server_started: float, held: set[tuple[str, int, int]]) -> str:
    """Why `session` (the PROCESSLIST row of the entry's thread id) is not proven to be the entry's; '' if it is.

    Thread ids grow by one per connection from the server's start, so on the same server run
    the id names that one session; the user and the client's host:port (TCP) must agree too.
    `held`: this host's TCP client ends some process still holds (local address, port, server port).
    """
    if session is None:
        return "is gone"
    if entry.connected_at < server_started + START_TOLERANCE:
        return "was recorded before the server's last start"
    if session.user != entry.user:
        return f"now belongs to user {session.user!r}"
    addr, sep, port = session.host.rpartition(":")
    if entry.client is None:  # a Unix socket: the server shows 'localhost', no port
        if sep and port.isdigit():
            return f"now has a TCP client ({session.host})"
        return ""
    if not (sep and port.isdigit() and int(port) == entry.client[1]):
        return f"now has client {session.host!r}, not port {entry.client[1]}"
    seen = _ip(addr)
    mine = _ip(entry.client[0])
    if seen is not None and mine is not None and seen != mine:
        return f"now has client {session.host!r}, not {entry.client[0]}"
    if entry.peer_port is not None and mine is not None and (mine, entry.client[1], entry.peer_port) in held:
        return "has its client end held by a live process of this host"
    return ""
