"""The site's WSGI app, and what many sites do at start-up: read from the database before serving.

Wagtail's site root paths (cached after this) stand for any start-up query; with
--preload it runs in the master and leaves a pooled connection open there, which
every forked worker inherits.
"""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "fhsite.settings")
application = get_wsgi_application()

from wagtail.models import Site  # noqa: E402

Site.get_site_root_paths()
