"""The MySQL site's views, plus /locked: a query that waits for a row lock the test holds (up to 50 s).

MariaDB's SLEEP() looks at its client every 5 s and ends once the client is gone; a lock wait (or a
long scan) does not: the stuck query the supervisor must end.
"""

from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.urls import path

from .mysqlreap_jobs import LOCKED
from .mysqlsite import views


def locked(request: HttpRequest) -> JsonResponse:
    """Wait for the row lock the test holds."""
    with connection.cursor() as cursor:
        cursor.execute(LOCKED)
        cursor.fetchall()
    return JsonResponse({"locked": True})


urlpatterns = [path("health", views.health), path("echo", views.echo), path("locked", locked)]
