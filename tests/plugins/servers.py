"""Server fixtures: a private Redis for the job runners' tests, and factories that stop every server they started."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import pytest

if TYPE_CHECKING:
    from forkhooks.demo.process import ServerProcess

    from ..servers import Server

S = TypeVar("S", bound="ServerProcess")


@pytest.fixture(scope="session")
def redis_socket(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A private Redis (Debian's redis-server) on a Unix socket for Celery and RQ tests, stopped with the session."""
    from ..redisserver import RedisServer, find_redis_server

    binary = find_redis_server()
    if binary is None:
        pytest.skip("redis-server not found (Debian: apt-get install redis-server; scripts/test installs it)")
    server = RedisServer(binary, tmp_path_factory.mktemp("redis"))
    try:
        yield server.socket
    finally:
        server.stop()


class Servers:
    """The servers one test started: each is killed (its whole process group) when the test ends, pass or fail."""

    def __init__(self, dsn: str, tmp_path: Path) -> None:
        self.dsn = dsn
        self.tmp_path = tmp_path
        self.started: list[ServerProcess] = []

    def add(self, server: S) -> S:
        """Kill `server` at the test's end; returns it."""
        self.started.append(server)
        return server

    def gunicorn(
        self, args: list[str], app: str, *, tmp: Path | None = None, env: dict[str, str] | None = None
    ) -> Server:
        """servers.serve(): gunicorn with 4 preloaded workers on a socket in `tmp` (the test's tmp_path)."""
        from ..servers import serve

        return self.add(serve(self.dsn, tmp or self.tmp_path, args, app, env=env))

    def uwsgi(self, config: Path, *args: str, tmp: Path | None = None, env: dict[str, str] | None = None) -> Server:
        """uwsgiservers.serve(): uWSGI from an ini (uwsgiservers.ini()) on a socket in `tmp` (the test's tmp_path)."""
        from ..uwsgiservers import serve

        return self.add(serve(self.dsn, tmp or self.tmp_path, config, *args, env=env))

    def kill_all(self) -> None:
        """Kill every server started, the last first."""
        for server in reversed(self.started):
            server.kill()


@pytest.fixture
def servers(dsn: str, tmp_path: Path) -> Iterator[Servers]:
    """Start servers with servers.gunicorn(...), servers.uwsgi(...) or servers.add(Server(...)): all killed at the end.

    A test that must see a server gone before it goes on (its backends freed) still calls server.kill() or
    server.stop() itself; this only replaces the `try: ... finally: server.kill()` around its use.
    """
    started = Servers(dsn, tmp_path)
    try:
        yield started
    finally:
        started.kill_all()


@pytest.fixture
def uwsgi_server(servers: Servers) -> Callable[..., Server]:
    """Start uWSGI: uwsgi_server(ini(tmp_path), *args, tmp=..., env=...); every one is killed at the end."""
    return servers.uwsgi


@pytest.fixture
def gunicorn_server(servers: Servers) -> Callable[..., Server]:
    """Start gunicorn: gunicorn_server(args, app, tmp=..., env=...); every one is killed at the end."""
    return servers.gunicorn
