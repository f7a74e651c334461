"""Server fixtures: a private Redis for the job runners' tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest


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
