"""The generated site's URLs, and /health for servers' readiness checks (answers without the database)."""

from django.http import HttpResponse
from django.urls import path
from mysite.urls import urlpatterns as site_urlpatterns

urlpatterns = [path("health", lambda request: HttpResponse("ok")), *site_urlpatterns]
