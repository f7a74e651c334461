"""Who holds the client end of a PostgreSQL backend's connection, as this host's kernel sees it (Linux).

A backend's application_name is a claim; the kernel's sockets are proof:
for a TCP client, pg_stat_activity's (client_addr, client_port) is a local
socket here, held by some process or closed; for a Unix-socket client, the
backend's socket (its /proc fds, then ``ss -x``) has a peer inode held by
some process, or none once the client end is closed. `forkhooks connections`
gives a verdict and `cancel` acts only on what this proves.
"""

from __future__ import annotations

import ipaddress
import os
import subprocess
from dataclasses import dataclass
from typing import Any

__all__ = ["Clients", "Holder", "comm"]


@dataclass(frozen=True)
class Holder:
    """Who holds the client end of a backend's connection on this host.

    pids set: these processes hold it; closed: proven closed; else `why` it is unknown.
    """

    pids: tuple[int, ...] = ()
    closed: bool = False
    why: str = ""


def comm(pid: int) -> str:
    """The command name of process `pid` (?, when it cannot be read)."""
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


def held_tcp_ends() -> set[tuple[str, int, int]]:
    """(local address, port, remote port) of this host's TCP sockets some process holds (empty without /proc)."""
    try:
        return {key for key, inode in _tcp_sockets().items() if inode}
    except (OSError, ValueError):
        return set()


def _tcp_sockets() -> dict[tuple[str, int, int], int]:
    """(local address, local port, remote port) -> inode (0 once its process closed it) of this host's TCP sockets."""
    found: dict[tuple[str, int, int], int] = {}
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
            found[(str(ip), int(port_hex, 16), int(cols[2].split(":")[1], 16))] = int(cols[9])
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
        cur.execute(
            "SELECT host(inet_client_addr()), inet_client_port(),"
            " coalesce(inet_server_port(), current_setting('port')::int), pg_backend_pid()"
        )
        row = cur.fetchone()
        self.seen_as: str | None = row[0]
        self.port = int(row[2])  # where TCP clients reach the server
        self.why = ""
        self.holders: dict[int, list[int]] = {}
        self.tcp: dict[tuple[str, int, int], int] = {}
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
        # Our own connection must be found held by us, as the server sees it: else address translation,
        # another network namespace, or a server in another container (its pids not ours) lies between.
        if self.seen_as is not None:
            inode = self.tcp.get((self.seen_as, int(row[1]), self.port))
            if not inode or os.getpid() not in self.holders.get(inode, ()):
                self.why = f"the server sees this host as {self.seen_as}:{row[1]}, not a socket of ours"
        elif os.getpid() not in self._unix(int(row[3])).pids:
            self.why = "the server's backends cannot be looked at from here (needs ss, and root or the server's user)"

    def local(self, addr: str) -> bool:
        """Whether a client the server sees at `addr` is on this host."""
        if self.seen_as is None:  # we reach the server over a Unix socket: it shares our loopback
            return ipaddress.ip_address(addr).is_loopback
        return addr == self.seen_as

    def holder(self, backend: int, client_addr: str | None, client_port: int | None) -> Holder:
        """Who holds the client end of the connection of server backend `backend` (client_addr and client_port
        as pg_stat_activity shows them, host(client_addr) for the address), or why that is unknown."""
        if self.why:
            return Holder(why=self.why)
        if client_port is None or client_port < 0:
            return self._unix(backend)
        if not client_addr or not self.local(client_addr):
            return Holder(why=f"its client {client_addr}:{client_port} is not this host")
        inode = self.tcp.get((client_addr, client_port, self.port), 0)
        if not inode:  # no such socket any more, or only its closing half (no process holds it)
            return Holder(closed=True)
        return self._held(inode)

    def _unix(self, backend: int) -> Holder:
        if self.seen_as is not None or self.unix is None:
            return Holder(why="a Unix-socket client, and the server's sockets cannot be read here (ss -x)")
        try:
            fds = [os.readlink(f"/proc/{backend}/fd/{fd}") for fd in os.listdir(f"/proc/{backend}/fd")]
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


def through_pooler(conn: Any, cur: Any) -> bool:
    """True when `conn` does not reach a PostgreSQL backend directly.

    The server tells each client its backend's pid at start-up (BackendKeyData);
    a pooler answers that itself, with a pid of its own making, and then passes
    queries to whichever server backend is free.
    """
    told = int(conn.info.backend_pid)  # psycopg 3 and psycopg2 >= 2.8 alike
    cur.execute("SELECT pg_backend_pid()")
    return told != int(cur.fetchone()[0])
