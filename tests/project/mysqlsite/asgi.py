"""ASGI entry point: loads the app and runs a start-up query, leaving the connection open as Django does."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.project.mysqlsite.settings")
application = get_asgi_application()

from django.db import connection  # noqa: E402

with connection.cursor() as cursor:
    cursor.execute("SELECT 1")
