"""`forkhooks connections`: the server's backends grouped by the process that holds them.

A backend's application_name says which process opened it
(``<prefix>:<role>:<pid>@<host>``), but a name is only a claim: behind a
pooler (pgbouncer) a server backend keeps the name of the last client that
used it, and a subprocess inherits its parent's PGAPPNAME. So a verdict that
calls for action needs proof from this host's kernel of who holds the client
end of the connection:

- ORPHAN (exit 1): the name carries this host's token, its pid is gone, and
  the client end of the connection is proven closed: for a Unix-socket client,
  the backend's socket has no live peer (``ss -x``); for a TCP client, its
  (client_addr, client_port) is no longer an open socket here, the server
  seeing this host as that address (checked on our own connection).
- "via pid N (comm): ... no verdict": the client end is held by another live
  process than the name says, typically pgbouncer holding a server
  connection that kept its last client's name. The backend is grouped under
  that process; nothing is flagged.
- "owner pid gone, unverified: ... no verdict" (exit 0): the pid is gone but
  the client end could not be looked at (not Linux, another user's processes,
  a server on another host seen through address translation).
- Connected through a pooler itself (the backend pid the server announced
  differs from pg_backend_pid()), the tool says so in one line and gives no
  verdict at all (exit 0): connect to the server directly for them.

Exit status: 1 for a proven ORPHAN or a backend held by a master (its name
being its holder's, or the holder unknown), 2 when the server cannot be
reached, else 0 ("idle in transaction" and the no-verdict lines are notes).
Proof needs /proc and ``ss`` (iproute2), as root or as the user of both the
clients and the server for Unix sockets.
"""

from __future__ import annotations

import ipaddress
import os
import subprocess
from dataclasses import dataclass, field
from typing import Any

from .._adapters.cancel import _through_pooler
from .appname import Owner as Named
from .appname import alive, ours, parse

_QUERY = """
SELECT pid, application_name, state, host(client_addr),
       extract(epoch FROM now() - coalesce(state_change, backend_start))::float, client_port
FROM pg_stat_activity
WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()
ORDER BY application_name, pid
"""

ORPHAN = "ORPHAN: owner pid gone"
MASTER = "held by a master"
ALARMING = {ORPHAN, MASTER}  # the verdicts that exit 1
POOLED = (
    "forkhooks connections: connected through a connection pooler (pgbouncer or the like): a server backend "
    "there keeps the name of the last client that used it, so no backend is called an orphan or a master's; "
    "connect to the server directly (--dsn) for verdicts"
)


@dataclass
class Backend:
    """One server backend and what its application_name says of its owner."""

    pid: int
    application_name: str
    state: str
    client_addr: str | None
    idle_seconds: float
    client_port: int | None = None  # -1: a Unix-socket client

    @property
    def owner(self) -> Named | None:
        """(prefix, role, pid, host) when forkhooks named it."""
        return parse(self.application_name)


@dataclass
class Owner:
    """A process holding backends, with the flags that call for a look."""

    name: str
    backends: list[Backend] = field(default_factory=list)
    flags: list[str] = field(default_factory=list)
    renamed: bool = False  # held by another process than the names say: show each backend's name


@dataclass(frozen=True)
class Holder:
    """Who holds the client end of a backend's connection on this host.

    pids set: these processes hold it; closed: proven closed; else `why` it is unknown.
    """

    pids: tuple[int, ...] = ()
    closed: bool = False
    why: str = ""


def _comm(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return "?"


def _socket_holders() -> dict[int, list[int]]:
    """socket inode -> the pids holding it (a forked child shares its parent's), over every process we may look at."""
    holders: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            fds = os.scandir(f"/proc/{entry.name}/fd")
            with fds:
                for fd in fds:
                    try:
                        link = os.readlink(fd.path)
                    except OSError:
                        continue
                    if link.startswith("socket:["):
                        holders.setdefault(int(link[8:-1]), []).append(int(entry.name))
        except OSError:  # gone, or another user's
            continue
    return holders


def _tcp_sockets() -> dict[tuple[str, int], int]:
    """(local address, local port) -> inode (0 once its process closed it) of this host's TCP sockets."""
    found: dict[tuple[str, int], int] = {}
    for path in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(path) as f:
                lines = f.readlines()[1:]
        except OSError:
            continue
        for line in lines:
            cols = line.split()
            if len(cols) < 10:
                continue
            addr_hex, port_hex = cols[1].split(":")
            raw = bytes.fromhex(addr_hex)
            # The kernel prints each 32-bit word in host (little-endian) order.
            raw = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
            ip = ipaddress.ip_address(raw)
            if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
                ip = ip.ipv4_mapped
            found[(str(ip), int(port_hex, 16))] = int(cols[9])
    return found


def _unix_streams() -> dict[int, tuple[str, int]] | None:
    """inode -> (local path, peer inode) of this host's Unix stream sockets (`ss -x`), None without ss."""
    try:
        out = subprocess.run(["ss", "-xn"], capture_output=True, text=True, timeout=10, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    streams: dict[int, tuple[str, int]] = {}
    for line in out.splitlines():
        cols = line.split()
        if len(cols) >= 8 and cols[0] == "u_str" and cols[5].isdigit() and cols[7].isdigit():
            streams[int(cols[5])] = (cols[4], int(cols[7]))
    return streams


class Clients:
    """This host's kernel's view of the client ends of the server's connections (Linux only)."""

    def __init__(self, conn: Any) -> None:
        cur = conn.cursor()
        # How the server sees this process: NULL over a Unix socket (then the server is on this host).
        cur.execute("SELECT host(inet_client_addr()), inet_client_port()")
        row = cur.fetchone()
        self.seen_as: str | None = row[0]
        self.why = ""
        self.holders: dict[int, list[int]] = {}
        self.tcp: dict[tuple[str, int], int] = {}
        self.unix: dict[int, tuple[str, int]] | None = None
        if not os.path.isdir("/proc/self/fd"):
            self.why = "no /proc on this system"
            return
        try:
            self.holders = _socket_holders()
            self.tcp = _tcp_sockets()
            self.unix = _unix_streams()
        except (OSError, ValueError) as exc:  # an unexpected /proc: no proof, and no crash
            self.why = f"this host's sockets cannot be read ({type(exc).__name__}: {exc})"
            return
        if self.seen_as is not None:
            # Our own socket must appear here under the address and port the server sees:
            # else address translation (or another network namespace) lies between us.
            inode = self.tcp.get((self.seen_as, int(row[1])))
            if not inode or os.getpid() not in self.holders.get(inode, ()):
                self.why = f"the server sees this host as {self.seen_as}:{row[1]}, not a socket of ours"

    def local(self, addr: str) -> bool:
        """Whether a client the server sees at `addr` is on this host."""
        if self.seen_as is None:  # we reach the server over a Unix socket: it shares our loopback
            return ipaddress.ip_address(addr).is_loopback
        return addr == self.seen_as

    def holder(self, b: Backend) -> Holder:
        """Who holds the client end of `b`'s connection here, or why that is unknown."""
        if self.why:
            return Holder(why=self.why)
        if b.client_port is None or b.client_port < 0:
            return self._unix(b)
        if not b.client_addr or not self.local(b.client_addr):
            return Holder(why=f"its client {b.client_addr}:{b.client_port} is not this host")
        inode = self.tcp.get((b.client_addr, b.client_port), 0)
        if not inode:  # no such socket any more, or only its closing half (no process holds it)
            return Holder(closed=True)
        return self._held(inode)

    def _unix(self, b: Backend) -> Holder:
        if self.seen_as is not None or self.unix is None:
            return Holder(why="a Unix-socket client, and the server's sockets cannot be read here (ss -x)")
        try:
            fds = [os.readlink(f"/proc/{b.pid}/fd/{fd}") for fd in os.listdir(f"/proc/{b.pid}/fd")]
        except OSError:
            return Holder(why="cannot read the server's processes (run as root or as the server's user)")
        for link in fds:
            if not link.startswith("socket:["):
                continue
            path, peer = self.unix.get(int(link[8:-1]), ("", 0))
            if ".s.PGSQL." not in path:
                continue
            if not peer:  # the kernel shows no peer inode once the client end is released
                return Holder(closed=True)
            return self._held(peer)
        return Holder(why="the backend's socket was not found")

    def _held(self, inode: int) -> Holder:
        pids = self.holders.get(inode)
        if not pids:
            return Holder(why="its client socket is open, held by a process this user cannot see")
        return Holder(pids=tuple(sorted(pids)))


def fetch(conn: Any) -> list[Backend]:
    """Every client backend but our own, from pg_stat_activity."""
    cur = conn.cursor()
    cur.execute(_QUERY)
    return [
        Backend(int(r[0]), r[1] or "", r[2] or "", r[3], float(r[4] or 0), None if r[5] is None else int(r[5]))
        for r in cur.fetchall()
    ]


def _flag(owner: Owner, flag: str) -> None:
    if flag not in owner.flags:
        owner.flags.append(flag)


def group(backends: list[Backend], clients: Clients | None = None) -> list[Owner]:
    """Group backends by owner process and flag orphans, idle-in-transaction ones, and masters.

    Without `clients` (connected through a pooler), names are all there is: nothing is flagged as
    an orphan or a master's, since a name there may be a former client's.
    """
    owners: dict[str, Owner] = {}
    for b in backends:
        who = b.owner
        key = f"{who[1]} {who[2]} ({who[0]})" if who else (b.application_name or "(no application_name)")
        held = clients.holder(b) if clients is not None and ours(who) else None
        if held is not None and held.pids and who is not None and who.pid not in held.pids:
            # Another live process holds it: a pooler's server connection, or a subprocess that
            # inherited PGAPPNAME. The name is not its owner's; the holder is.
            via = held.pids[0]
            owner = owners.setdefault(f"via pid {via} ({_comm(via)})", Owner(f"via pid {via} ({_comm(via)})"))
            owner.renamed = True
            owner.backends.append(b)
            _flag(owner, "holds backends named after other processes (a pooler?): owner unknown, no verdict")
        else:
            owner = owners.setdefault(key, Owner(key))
            owner.backends.append(b)
            if ours(who) and not alive(who.pid):
                if held is None:
                    _flag(owner, "owner pid gone, unverified: reached through a pooler, no verdict")
                elif held.closed:
                    _flag(owner, ORPHAN)
                elif not held.pids:
                    _flag(owner, f"owner pid gone, unverified: {held.why}; no verdict")
            if who and who[1] == "master" and clients is not None:
                _flag(owner, MASTER)
        if b.state.startswith("idle in transaction"):
            _flag(owner, "idle in transaction")
    return list(owners.values())


def render(owners: list[Owner]) -> str:
    """A plain-text report, one block per owner."""
    if not owners:
        return "no client backends"
    lines = []
    for owner in owners:
        flags = f"  [{', '.join(owner.flags)}]" if owner.flags else ""
        lines.append(f"{owner.name}: {len(owner.backends)} backend(s){flags}")
        for b in owner.backends:
            named = f"  last named {b.application_name or '-'}" if owner.renamed else ""
            lines.append(f"    backend {b.pid:>7}  {b.state or '-':<20} idle {b.idle_seconds:8.1f}s{named}")
    return "\n".join(lines)


# `forkhooks connections`: which process holds which of my server's connections?
HELP = "list the server's backends grouped by owner process; flag orphans, idle in transaction, masters"


def add_arguments(parser: Any) -> None:
    """Options of `forkhooks connections`."""
    parser.add_argument("--dsn", help="libpq DSN of the server (else FORKHOOKS_DSN, else Django settings)")
    parser.add_argument("--settings", help="Django settings module to take the server from")
    parser.add_argument("--alias", default="default", help="Django database alias (with --settings)")


def _connect(args: Any) -> Any:
    dsn = args.dsn or os.environ.get("FORKHOOKS_DSN")
    if dsn:
        try:
            import psycopg

            return psycopg.connect(dsn, autocommit=True, application_name="forkhooks-connections")
        except ImportError:
            import psycopg2

            conn = psycopg2.connect(dsn, application_name="forkhooks-connections")
            conn.autocommit = True
            return conn
    if args.settings:
        os.environ["DJANGO_SETTINGS_MODULE"] = args.settings
    import django
    from django.db import connections

    django.setup()
    wrapper = connections[args.alias]
    params = wrapper.get_connection_params()
    params["application_name"] = "forkhooks-connections"
    return wrapper.Database.connect(**params)


def run(args: Any) -> int:
    """Print the report; exit 1 when a proven orphan or a master-held backend is found (never through a pooler)."""
    try:
        conn = _connect(args)
    except Exception as exc:
        print(f"forkhooks connections: cannot connect: {type(exc).__name__}: {str(exc).strip()}")
        return 2
    try:
        pooled = _through_pooler(conn, conn.cursor())
        owners = group(fetch(conn), None if pooled else Clients(conn))
    finally:
        conn.close()
    if pooled:
        print(POOLED)
    print(render(owners))
    return 1 if any(ALARMING & set(o.flags) for o in owners) else 0
