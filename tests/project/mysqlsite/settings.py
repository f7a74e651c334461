"""Django's MySQL backend with CONN_MAX_AGE=None, as MySQL sites usually run.

FORKHOOKS_MYSQL_DRIVER=pymysql runs it on PyMySQL (installed as MySQLdb, as its docs say);
the default is mysqlclient. FORKHOOKS_MYSQL_APPS adds apps (comma-separated), e.g. forkhooks.django.
"""

import os

from tests.mariadb import django_database

if os.environ.get("FORKHOOKS_MYSQL_DRIVER") == "pymysql":
    import pymysql

    pymysql.install_as_MySQLdb()

SECRET_KEY = "test-only-not-secret"
DEBUG = False
ALLOWED_HOSTS = ["*"]
ROOT_URLCONF = "tests.project.mysqlsite.urls"
INSTALLED_APPS: list[str] = [a for a in os.environ.get("FORKHOOKS_MYSQL_APPS", "").split(",") if a]
MIDDLEWARE: list[str] = []
USE_TZ = True
DATABASES = {"default": django_database(os.environ["FORKHOOKS_MYSQL_DSN"], CONN_MAX_AGE=None)}
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"forkhooks": {"handlers": ["console"], "level": "INFO"}},
}
