"""WSGI entry point; loads the app and runs its start-up query."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "forkhooks.demo.site.settings")
application = get_wsgi_application()

from forkhooks.demo.site.startup import read_feature_flags  # noqa: E402

read_feature_flags()
