"""The WSGI plumbing the three apps share: GET /health, GET /echo?tag=… through one query function."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from typing import Any, TypeVar
from urllib.parse import parse_qs

import forkhooks

T = TypeVar("T")
Query = Callable[[str], tuple[str, int]]

DSN = os.environ.get("FORKHOOKS_DSN", "")


def track(pool: T) -> T:
    """forkhooks.track(pool), unless FORKHOOKS_TRACK=0 (the tests' control run)."""
    return forkhooks.track(pool) if os.environ.get("FORKHOOKS_TRACK", "1") != "0" else pool


def make_app(query: Query) -> Callable[..., Iterable[bytes]]:
    """A WSGI app answering /echo?tag=… with the tag as PostgreSQL returned it."""

    def application(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == "/health":
            return _reply(start_response, "200 OK", "text/plain", b"ok")
        if path != "/echo":
            return _reply(start_response, "404 Not Found", "text/plain", b"not found")
        tag = parse_qs(environ.get("QUERY_STRING", "")).get("tag", [""])[0]
        got, backend = query(tag)
        body = json.dumps({"tag": got, "sent": tag, "pid": os.getpid(), "backend": backend}).encode()
        return _reply(start_response, "200 OK", "application/json", body)

    return application


def _reply(start_response: Callable[..., Any], status: str, kind: str, body: bytes) -> list[bytes]:
    start_response(status, [("Content-Type", kind), ("Content-Length", str(len(body)))])
    return [body]
