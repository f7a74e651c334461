"""The site's ASGI app (uvicorn workers), with the same start-up query as wsgi.py."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "fhsite.settings")
application = get_asgi_application()

from wagtail.models import Site  # noqa: E402

Site.get_site_root_paths()
