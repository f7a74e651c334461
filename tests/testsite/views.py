"""Views only the tests use: a query that holds its connection, a fork inside a request, a dirty worker's answer."""

import json
import os
import signal

from django.db import connection
from django.http import HttpRequest, JsonResponse


def dirty_echo(request: HttpRequest) -> JsonResponse:
    """The same, answered by a gunicorn dirty worker (run with --dirty-app tests.testsite.dirty:QueryApp)."""
    from gunicorn.dirty import get_dirty_client

    return JsonResponse(get_dirty_client().execute("tests.testsite.dirty:QueryApp", "echo", request.GET.get("tag", "")))


def slow(request: HttpRequest, seconds: str | None = None) -> JsonResponse:
    """/slow?seconds=N (or /slow/N): echo the tag from a query that holds its pooled connection N seconds."""
    tag = request.GET.get("tag", "")
    delay = float(seconds if seconds is not None else request.GET.get("seconds", "1"))
    with connection.cursor() as cursor:
        cursor.execute("SELECT %s::text, pg_backend_pid(), pg_sleep(%s)", [tag, delay])
        got, backend, _ = cursor.fetchone()
    return JsonResponse({"tag": got, "sent": tag, "pid": os.getpid(), "backend": backend})


FORK_CHILD_ALARM = 5  # a child stuck on a shared socket is killed, not waited for


def fork_echo(request: HttpRequest) -> JsonResponse:
    """Fork a child that sends the tag through PostgreSQL via Django; answer with what the child got.

    The parent thread queries too while the child runs. The answer carries the child's row, so a
    child that used a connection another thread (or the parent) uses shows up as a wrong row, and
    one that failed or hung (killed after FORK_CHILD_ALARM s) as a 500. `held`: pooled connections
    this worker's other threads held when it forked.
    """
    tag = request.GET.get("tag", "")
    stats = connection.pool.get_stats() if getattr(connection, "pool", None) is not None else {}
    held = stats.get("pool_size", 0) - stats.get("pool_available", 0)  # by this worker's other threads
    read_end, write_end = os.pipe()
    child = os.fork()
    if child == 0:  # the child: query, report one line, leave without finalizers
        code = 1
        try:
            os.close(read_end)
            signal.alarm(FORK_CHILD_ALARM)
            with connection.cursor() as cursor:
                cursor.execute("SELECT %s::text, pg_backend_pid()", [tag])
                got, backend = cursor.fetchone()
            os.write(write_end, json.dumps({"tag": got, "backend": backend}).encode())
            code = 0
        finally:
            os._exit(code)
    os.close(write_end)
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT %s::text, pg_backend_pid()", [tag])
            parent_got, parent_backend = cursor.fetchone()
        with os.fdopen(read_end, "rb") as pipe:
            raw = pipe.read()  # EOF when the child exits (at most FORK_CHILD_ALARM s)
    finally:
        os.waitpid(child, 0)
    if not raw:
        return JsonResponse({"error": "the child did not answer", "pid": os.getpid()}, status=500)
    answer = json.loads(raw)
    if parent_got != tag:
        answer["tag"] = parent_got  # the parent's own row was not its own: count it as wrong
    if answer["backend"] == parent_backend:  # one session for two processes: not the child's own
        answer["tag"] = f"shared:{parent_backend}"
    return JsonResponse({**answer, "sent": tag, "pid": os.getpid(), "parent_backend": parent_backend, "held": held})
