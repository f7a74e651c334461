"""This host's processes: whether a pid is alive, and when it started (to tell it from a later one with its pid)."""

from __future__ import annotations

import os


def alive(pid: int) -> bool:
    """Whether a process with this pid exists on this host (a zombie counts until it is reaped)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, another user's
        return True
    return True


def start_time(pid: int) -> int | None:
    """When process `pid` started, in clock ticks since boot (/proc/<pid>/stat), None where unknown.

    Tells a process from a later one that got the same pid.
    """
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read()
        return int(raw[raw.rindex(b")") + 2 :].split()[19])
    except (OSError, ValueError, IndexError):
        return None
