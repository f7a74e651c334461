"""forkhooks.django installed; pooling, CONN_MAX_AGE and ASGI_APPLICATION set per case by environment."""

import os

from forkhooks.demo.site.database import django_database

SECRET_KEY = "test-only-not-secret"
USE_TZ = True
INSTALLED_APPS = ["forkhooks.django"]
_pool_max = int(os.environ.get("CASE_POOL_MAX", "0"))
DATABASES = {
    "default": django_database(
        os.environ.get("FORKHOOKS_DSN", ""),
        pool={"min_size": 1, "max_size": _pool_max} if _pool_max else None,
        CONN_MAX_AGE=int(os.environ.get("CASE_CONN_MAX_AGE", "0")),
    )
}
if os.environ.get("CASE_ASGI"):
    ASGI_APPLICATION = "tests.testsite.asgi.application"
