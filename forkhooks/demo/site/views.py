"""Views that prove each answer is the request's own."""

import os

from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse


def health(request: HttpRequest) -> HttpResponse:
    """Readiness: answers without touching the database."""
    return HttpResponse("ok")


def echo(request: HttpRequest) -> JsonResponse:
    """Send the caller's random tag through PostgreSQL and return what came back."""
    tag = request.GET.get("tag", "")
    with connection.cursor() as cursor:
        cursor.execute("SELECT %s::text, pg_backend_pid()", [tag])
        got, backend = cursor.fetchone()
    return JsonResponse({"tag": got, "sent": tag, "pid": os.getpid(), "backend": backend})
