"""A private pgbouncer (Debian's) in front of the test PostgreSQL, on a free 127.0.0.1 port, with bounded waits."""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from forkhooks.demo.process import poll


def find_pgbouncer() -> str | None:
    """Debian's pgbouncer (/usr/sbin is not on every PATH), else None."""
    return shutil.which("pgbouncer") or next(
        (str(p) for p in (Path("/usr/sbin/pgbouncer"), Path("/usr/bin/pgbouncer")) if p.exists()), None
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PgBouncer:
    """pgbouncer in a directory of its own (ini, userlist), in `mode` (session or transaction), for `server_dsn`.

    pgbouncer refuses to run as root; as root it drops to the owner of the
    server's socket directory (the only user that may enter it), else nobody.
    """

    def __init__(self, binary: str, server_dsn: str, mode: str) -> None:
        # Its own directory in /tmp: as root, pgbouncer runs as another user, who cannot enter pytest's.
        tmp = self.tmp = Path(tempfile.mkdtemp(prefix=f"forkhooks-pgbouncer-{mode}-"))
        server = conninfo_to_dict(server_dsn)
        self.user = str(server.get("user") or pwd.getpwuid(os.getuid()).pw_name)
        self.dbname = str(server.get("dbname") or self.user)
        self.port = _free_port()
        self.mode = mode
        host = str(server.get("host") or "/var/run/postgresql")
        target = f"host={host} port={server.get('port') or 5432} user={self.user} dbname={self.dbname}"
        self.log_path = tmp / "pgbouncer.log"
        ini = tmp / "pgbouncer.ini"
        (tmp / "userlist.txt").write_text(f'"{self.user}" ""\n')
        ini.write_text(
            "[databases]\n"
            f"{self.dbname} = {target}\n"
            "[pgbouncer]\n"
            f"listen_addr = 127.0.0.1\nlisten_port = {self.port}\nunix_socket_dir =\n"
            f"auth_type = trust\nauth_file = {tmp / 'userlist.txt'}\n"
            f"pool_mode = {mode}\ndefault_pool_size = 20\nmax_client_conn = 500\n"
            # A pooled server connection is reused as is: no server_reset_query in transaction mode
            # (pgbouncer's default), and none kept idle for long so a test's end is clean.
            "server_idle_timeout = 600\nserver_check_delay = 0\n"
            f"logfile = {self.log_path}\npidfile = {tmp / 'pgbouncer.pid'}\n"
        )
        argv = [binary]
        if os.getuid() == 0:
            owner = pwd.getpwuid(os.stat(host).st_uid).pw_name if host.startswith("/") else "nobody"
            os.chown(tmp, pwd.getpwnam(owner).pw_uid, -1)
            argv += ["-u", owner]
        argv.append(str(ini))
        with open(tmp / "pgbouncer.err", "wb") as err:
            self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=err, start_new_session=True)
        self.dsn = make_conninfo(host="127.0.0.1", port=self.port, user=self.user, dbname=self.dbname)
        try:
            poll(self._ready, timeout=20, what=f"pgbouncer ({mode}) answering on 127.0.0.1:{self.port}")
        except BaseException:
            self.stop()
            raise

    @property
    def pid(self) -> int:
        """pgbouncer's process id."""
        return self.proc.pid

    def log(self) -> str:
        """pgbouncer's log and stderr so far."""
        parts = [p.read_text(errors="replace") for p in (self.log_path, self.tmp / "pgbouncer.err") if p.exists()]
        return "\n".join(parts)

    def _ready(self) -> bool:
        if self.proc.poll() is not None:
            raise RuntimeError(f"pgbouncer exited with {self.proc.returncode}: {self.log()[-2000:]}")
        try:
            with psycopg.connect(self.dsn, connect_timeout=2, application_name="forkhooks-observer") as conn:
                conn.execute("SELECT 1")
        except psycopg.OperationalError:
            return False
        return True

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after a bound."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        shutil.rmtree(self.tmp, ignore_errors=True)
