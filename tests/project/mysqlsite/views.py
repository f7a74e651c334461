"""Views that prove each answer is the request's own, through MySQL."""

import os

from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse


def health(request: HttpRequest) -> HttpResponse:
    """Readiness: answers without touching the database."""
    return HttpResponse("ok")


def echo(request: HttpRequest) -> JsonResponse:
    """Send the caller's random tag through MySQL and return what came back, with the session's id."""
    tag = request.GET.get("tag", "")
    with connection.cursor() as cursor:
        cursor.execute("SELECT %s, CONNECTION_ID()", [tag])
        got, session = cursor.fetchone()
    return JsonResponse({"tag": got, "sent": tag, "pid": os.getpid(), "backend": session})


def sleep(request: HttpRequest) -> JsonResponse:
    """/sleep?seconds=N: a query that runs N seconds (a stuck request)."""
    seconds = float(request.GET.get("seconds", "30"))
    with connection.cursor() as cursor:
        cursor.execute("SELECT SLEEP(%s), CONNECTION_ID()", [seconds])
        slept, session = cursor.fetchone()
    return JsonResponse({"slept": slept, "pid": os.getpid(), "backend": session})
