"""A private MariaDB (Debian's mariadbd) for the MySQL tests: its own datadir, Unix socket and 127.0.0.1 port.

DSNs are URLs: mysql://USER[:PASSWORD]@HOST[:PORT]/NAME[?unix_socket=PATH]. FORKHOOKS_TEST_MYSQL_DSN
names an external server instead (its user needs CREATE, PROCESS and CONNECTION ADMIN or SUPER for KILL).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

from forkhooks.demo.process import poll

DATABASE = "forkhooks"


def find_mariadbd() -> str | None:
    """Debian's mariadbd (in /usr/sbin, often not on PATH), else None."""
    return shutil.which("mariadbd") or next(
        (str(p) for p in (Path("/usr/sbin/mariadbd"), Path("/usr/sbin/mysqld")) if p.exists()), None
    )


def params(dsn: str) -> dict[str, Any]:
    """Keyword arguments for MySQLdb.connect / pymysql.connect from a mysql:// URL."""
    url = urlsplit(dsn)
    found: dict[str, Any] = {"user": unquote(url.username or "root"), "database": url.path.lstrip("/") or DATABASE}
    if url.password:
        found["password"] = unquote(url.password)
    socket_path = parse_qs(url.query).get("unix_socket", [None])[0]
    if socket_path:
        found["unix_socket"] = socket_path
    else:
        found["host"] = url.hostname or "127.0.0.1"
        found["port"] = url.port or 3306
    return found


def django_database(dsn: str, engine_options: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    """DATABASES['default'] for Django's MySQL backend from a mysql:// URL."""
    p = params(dsn)
    options: dict[str, Any] = {"charset": "utf8mb4", **(engine_options or {})}
    if "unix_socket" in p:
        options["unix_socket"] = p["unix_socket"]
    entry = {
        "ENGINE": "django.db.backends.mysql",
        "NAME": p["database"],
        "USER": p["user"],
        "PASSWORD": p.get("password", ""),
        "HOST": p.get("host", "localhost"),
        "PORT": str(p.get("port", "")),
        "OPTIONS": options,
    }
    entry.update(extra)
    return entry


def connect(dsn: str, **kwargs: Any) -> Any:
    """An observer connection (autocommit) with PyMySQL: the tests inspect the server with it."""
    import pymysql

    return pymysql.connect(autocommit=True, connect_timeout=5, **params(dsn), **kwargs)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class MariaDB:
    """mariadbd in a temp dir: its datadir, socket, 127.0.0.1 on a free port, log; stopped with `stop()`.

    As root it runs with --user=root (mariadbd otherwise refuses to start as root).
    """

    def __init__(self, binary: str) -> None:
        # Its own short directory: a Unix socket path must stay under 108 bytes.
        tmp = self.tmp = Path(tempfile.mkdtemp(prefix="forkhooks-mariadb-"))
        self.socket = tmp / "mysqld.sock"
        self.port = _free_port()
        self.log_path = tmp / "mariadb.log"
        datadir = tmp / "data"
        user = ["--user=root"] if os.getuid() == 0 else []
        install = shutil.which("mariadb-install-db") or shutil.which("mysql_install_db") or "mariadb-install-db"
        done = subprocess.run(
            [install, "--no-defaults", f"--datadir={datadir}", "--auth-root-authentication-method=normal"]
            + ["--skip-test-db", "--skip-name-resolve", *user],
            capture_output=True,
            text=True,
            timeout=120,
        )
        if done.returncode != 0:
            shutil.rmtree(tmp, ignore_errors=True)
            raise RuntimeError(f"mariadb-install-db failed: {done.stdout[-1500:]}{done.stderr[-1500:]}")
        argv = [binary, "--no-defaults", f"--datadir={datadir}", f"--socket={self.socket}", f"--port={self.port}"]
        argv += ["--bind-address=127.0.0.1", "--skip-name-resolve", f"--pid-file={tmp / 'mariadb.pid'}"]
        # Small and quick: the tests need connections, not throughput. Aborted connections are
        # logged (log_warnings=2): a test counts them.
        argv += ["--innodb-buffer-pool-size=32M", "--max-connections=300", "--log-warnings=2"]
        argv += ["--performance-schema=ON", f"--log-error={self.log_path}", *user]
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            poll(self._ready, timeout=60, what=f"mariadbd answering on {self.socket}")
            with self._root() as conn, conn.cursor() as cur:
                cur.execute(f"CREATE DATABASE IF NOT EXISTS {DATABASE}")
        except BaseException:
            self.stop()
            raise
        self.dsn = f"mysql://root@localhost/{DATABASE}?unix_socket={quote(str(self.socket))}"
        self.tcp_dsn = f"mysql://root@127.0.0.1:{self.port}/{DATABASE}"

    def _root(self) -> Any:
        import pymysql

        return pymysql.connect(unix_socket=str(self.socket), user="root", autocommit=True, connect_timeout=2)

    def log(self) -> str:
        """The server's error log so far."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def _ready(self) -> bool:
        if self.proc.poll() is not None:
            raise RuntimeError(f"mariadbd exited with {self.proc.returncode}: {self.log()[-2000:]}")
        if not self.socket.exists():
            return False
        import pymysql

        try:
            self._root().close()
        except pymysql.err.OperationalError:
            return False
        return True

    def stop(self) -> None:
        """SIGTERM (a clean shutdown), then SIGKILL after a bound."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        shutil.rmtree(self.tmp, ignore_errors=True)


@contextmanager
def available(dsn: str | None = None) -> Iterator[str | None]:
    """`dsn`, else FORKHOOKS_TEST_MYSQL_DSN, else a private mariadbd for the block; None when there is none."""
    external = dsn or os.environ.get("FORKHOOKS_TEST_MYSQL_DSN")
    if external:
        yield external
        return
    binary = find_mariadbd()
    if binary is None:
        yield None
        return
    server = MariaDB(binary)
    try:
        yield server.dsn
    finally:
        server.stop()


def aborted_clients(dsn: str) -> int:
    """The server's Aborted_clients: connections that ended without a proper close (MariaDB logs each one)."""
    with connect(dsn) as conn, conn.cursor() as cur:
        cur.execute("SHOW GLOBAL STATUS LIKE 'Aborted_clients'")
        row = cur.fetchone()
    return int(row[1])


def sessions(dsn: str, user_like: str = "%") -> list[tuple[int, str]]:
    """(id, command) of every client session on the server but this observer's."""
    with connect(dsn) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT id, command FROM information_schema.processlist"
            " WHERE id <> CONNECTION_ID() AND command <> 'Daemon' AND user LIKE %s",
            [user_like],
        )
        return [(int(i), str(c)) for i, c in cur.fetchall()]
