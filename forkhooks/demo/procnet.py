"""Count a process's sockets to the PostgreSQL server, as the kernel sees them (`ss`): the demo and the tests."""

from __future__ import annotations

import re
import subprocess


def server_sockets(pid: int, port: int = 5432) -> int:
    """Sockets `pid` holds that are connected to a PostgreSQL server (Unix or TCP)."""
    owner = re.compile(rf"\bpid={pid},")
    unix = subprocess.run(["ss", "-xpn"], capture_output=True, text=True, check=True).stdout.splitlines()
    path_of: dict[str, str] = {}
    mine: list[str] = []  # peer inodes of pid's unix sockets
    for line in unix:
        cols = line.split()
        if len(cols) < 8 or cols[0] != "u_str":
            continue
        path_of[cols[5]] = cols[4]
        if owner.search(line):
            mine.append(cols[7])
    count = sum(1 for peer in mine if ".s.PGSQL." in path_of.get(peer, ""))
    tcp = subprocess.run(["ss", "-tpn", "state", "established"], capture_output=True, text=True, check=True)
    for line in tcp.stdout.splitlines():
        cols = line.split()
        if len(cols) >= 5 and owner.search(line) and cols[3].rsplit(":", 1)[-1] == str(port):
            count += 1
    return count
