"""The SQLite site's WSGI app; loading it runs a start-up query (creates the table), as a project's check does."""

from __future__ import annotations

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.project.sqlite_site")

from django.core.wsgi import get_wsgi_application  # noqa: E402
from django.db import connection  # noqa: E402

application = get_wsgi_application()

with connection.cursor() as cursor:  # the master keeps this connection open (CONN_MAX_AGE=None)
    cursor.execute("CREATE TABLE IF NOT EXISTS writes (id INTEGER PRIMARY KEY, tag TEXT NOT NULL, pid INTEGER)")
