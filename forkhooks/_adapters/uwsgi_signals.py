"""uWSGI's stop handlers made non-reentrant: each blocks the other stop signals while it runs.

uWSGI installs its C handlers with an empty ``sa_mask`` (``uwsgi_unix_signal``),
and they call ``exit()``. A process stopped through its whole group (systemd's
KillMode=control-group, Ctrl-C) gets the group's signal and its master's within
microseconds: the second one interrupts the first handler's ``exit()`` and
re-enters it, so the process skips ``uwsgi.atexit`` (no close) or deadlocks
inside glibc's exit (the master SIGKILLs it after its mercy). Adding the stop
signals to each handler's ``sa_mask`` makes the kernel hold the second signal
until the process is gone. Python's ``signal`` module cannot see C handlers,
so this reads and writes ``struct sigaction`` through ctypes; the handler,
its flags and its restorer are kept exactly.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform
import signal
import sys
import threading
import time
from collections.abc import Iterable
from typing import Any

from .._core import Log
from . import stopsignals

__all__ = ["mask_now", "mask_stop_handlers", "mask_when_installed"]

STOP_SIGNALS = stopsignals.UWSGI

SIG_DFL, SIG_IGN = 0, 1


class _SigAction(ctypes.Structure):
    """glibc's (and musl's) struct sigaction on 64-bit Linux with the generic layout (x86_64, aarch64)."""

    _fields_ = [
        ("sa_handler", ctypes.c_void_p),  # a union with sa_sigaction: one pointer either way
        ("sa_mask", ctypes.c_ulong * (1024 // (8 * ctypes.sizeof(ctypes.c_ulong)))),  # sigset_t: 1024 bits
        ("sa_flags", ctypes.c_int),
        ("sa_restorer", ctypes.c_void_p),
    ]


# Architectures whose C library uses the layout above (others, e.g. MIPS, put sa_flags first).
_LAYOUT_OK = {"x86_64", "amd64", "aarch64", "arm64"}

_libc: list[Any] = []


def _c() -> Any:
    """libc with sigaction and sigaddset, or raise OSError saying why not."""
    if not _libc:
        if not sys.platform.startswith("linux") or platform.machine().lower() not in _LAYOUT_OK:
            raise OSError(f"struct sigaction layout unknown on {sys.platform}/{platform.machine()}")
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.sigaction.argtypes = [ctypes.c_int, ctypes.POINTER(_SigAction), ctypes.POINTER(_SigAction)]
        libc.sigaddset.argtypes = [ctypes.c_void_p, ctypes.c_int]
        libc.sigismember.argtypes = [ctypes.c_void_p, ctypes.c_int]
        _libc.append(libc)
    return _libc[0]


def _get(libc: Any, signum: int) -> _SigAction:
    current = _SigAction()
    if libc.sigaction(signum, None, ctypes.byref(current)) != 0:
        raise OSError(ctypes.get_errno(), f"sigaction({signum}) read failed")
    return current


def handler_of(signum: int) -> int:
    """The address of `signum`'s current handler (0: default, 1: ignored)."""
    return int(_get(_c(), signum).sa_handler or 0)


def masked(signum: int) -> bool:
    """Whether `signum`'s handler blocks every stop signal while it runs."""
    sa = _get(_c(), signum)
    return all(_c().sigismember(ctypes.byref(sa.sa_mask), s) == 1 for s in STOP_SIGNALS)


def mask_stop_handlers(signals: Iterable[int] = STOP_SIGNALS) -> list[int]:
    """Add every stop signal to the sa_mask of each handler in `signals` that is a function; the ones changed."""
    libc = _c()
    changed = []
    for signum in signals:
        sa = _get(libc, signum)
        if (sa.sa_handler or 0) in (SIG_DFL, SIG_IGN):  # nothing runs: nothing to protect
            continue
        before = bytes(sa.sa_mask)
        for other in STOP_SIGNALS:
            libc.sigaddset(ctypes.byref(sa.sa_mask), other)
        if bytes(sa.sa_mask) == before:
            continue
        # The same handler, flags and restorer go back: only the mask grew.
        if libc.sigaction(signum, ctypes.byref(sa), None) != 0:
            raise OSError(ctypes.get_errno(), f"sigaction({signum}) write failed")
        changed.append(signum)
    return changed


def mask_now(log: Log) -> None:
    """Mask the stop handlers installed in this process now (mules and spoolers get theirs before post-fork)."""
    try:
        mask_stop_handlers()
    except Exception as exc:
        log.warning("forkhooks: could not make uWSGI's stop handlers block each other (%s); continuing", exc)


# How long a worker waits for uWSGI to install its handlers after the post-fork hook (a few
# microseconds normally), and how often it looks.
WAIT = 10.0
LAST = 0.1
LOOK = 0.001


def mask_when_installed(log: Log, blocked: Any) -> None:
    """In a worker: mask uWSGI's stop handlers once uWSGI has installed them, from a short-lived thread.

    uWSGI sets a worker's handlers (uwsgi_worker_run) after the post-fork hook
    and after a lazy-apps app has loaded, and no Python runs in the worker
    between that and its first request: a thread, with the stop signals
    blocked (`blocked`, a context manager), waits for the worker's SIGTERM
    handler to replace the one inherited from the master (then for SIGUSR2,
    the last one uWSGI sets), masks them all, and ends.
    """
    try:
        term, usr2 = handler_of(signal.SIGTERM), handler_of(signal.SIGUSR2)
    except Exception as exc:
        log.warning("forkhooks: could not make uWSGI's stop handlers block each other (%s); continuing", exc)
        return

    def wait_and_mask() -> None:
        try:
            if not _wait(lambda: handler_of(signal.SIGTERM) != term, WAIT):
                log.warning(
                    "forkhooks: worker %d: uWSGI's stop handlers did not appear within %.0f s; left as they are",
                    os.getpid(),
                    WAIT,
                )
                return
            _wait(lambda: handler_of(signal.SIGUSR2) != usr2, LAST)  # set right after SIGTERM's, in the same call
            mask_stop_handlers()
        except Exception as exc:
            log.warning("forkhooks: could not make uWSGI's stop handlers block each other (%s); continuing", exc)

    with blocked():  # the thread never takes a stop signal itself
        threading.Thread(target=wait_and_mask, name="forkhooks-stop-handlers", daemon=True).start()


def _wait(check: Any, timeout: float) -> bool:
    """A bounded poll for a change uWSGI's C code makes in the main thread; whether it came."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(LOOK)
    return True
