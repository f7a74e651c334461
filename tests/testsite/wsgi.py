"""WSGI entry point of the tests' site: the app, then its start-up query (FORKHOOKS_EXAMPLE_STARTUP_QUERY=0: none)."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.testsite.settings")
application = get_wsgi_application()

from forkhooks.demo.site.startup import read_feature_flags  # noqa: E402

if os.environ.get("FORKHOOKS_EXAMPLE_STARTUP_QUERY") != "0":  # an app that loads without a query
    read_feature_flags()
