"""A private redis-server for the Celery and RQ tests: Unix socket only, no persistence, bounded waits."""

from __future__ import annotations

import shutil
import socket
import subprocess
from pathlib import Path

from forkhooks.demo.process import poll


def find_redis_server() -> str | None:
    """Debian's redis-server (in /usr/bin, or wherever PATH has one), else None."""
    return shutil.which("redis-server") or next(
        (str(p) for p in (Path("/usr/bin/redis-server"), Path("/usr/sbin/redis-server")) if p.exists()), None
    )


def ping(path: Path) -> bool:
    """Whether a Redis answers PING on the Unix socket `path`."""
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(2)
        s.connect(str(path))
        s.sendall(b"PING\r\n")
        return s.recv(16).startswith(b"+PONG")


class RedisServer:
    """redis-server listening only on `tmp`/redis.sock (port 0: no TCP), saving nothing to disk."""

    def __init__(self, binary: str, tmp: Path) -> None:
        self.socket = tmp / "redis.sock"
        self.log_path = tmp / "redis.log"
        argv = [binary, "--port", "0", "--unixsocket", str(self.socket), "--unixsocketperm", "700"]
        argv += ["--save", "", "--appendonly", "no", "--dir", str(tmp), "--daemonize", "no"]
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            poll(self._ready, timeout=20, what="redis-server answering PING")
        except BaseException:
            self.stop()
            raise

    def _ready(self) -> bool:
        if self.proc.poll() is not None:
            raise RuntimeError(f"redis-server exited with {self.proc.returncode}: {self.log_path.read_text()[-2000:]}")
        return self.socket.exists() and ping(self.socket)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after a bound."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
