"""Huey (run_huey) and django-q2 (qcluster) on MySQL/MariaDB: CONN_MAX_AGE=None, forkhooks.django installed.

FORKHOOKS_MYSQL_DSN names the server, FORKHOOKS_MYSQL_DRIVER=pymysql runs PyMySQL (default mysqlclient),
FORKHOOKS_TEST_APP=0 drops forkhooks.django (the controls), FORKHOOKS_TEST_QUEUE names the test's queue.
"""

import os

from tests.mariadb import django_database

if os.environ.get("FORKHOOKS_MYSQL_DRIVER") == "pymysql":
    import pymysql

    pymysql.install_as_MySQLdb()

SECRET_KEY = "test-only-not-secret"
USE_TZ = True
_APP = ["forkhooks.django"] if os.environ.get("FORKHOOKS_TEST_APP") != "0" else []
INSTALLED_APPS = [*_APP, "huey.contrib.djhuey", "django_q", "tests.project.mysqlrunners"]
DATABASES = {
    "default": django_database(os.environ.get("FORKHOOKS_MYSQL_DSN", "mysql://root@localhost/x"), CONN_MAX_AGE=None)
}

_REDIS = os.environ.get("FORKHOOKS_TEST_REDIS", "")
_QUEUE = os.environ.get("FORKHOOKS_TEST_QUEUE", "forkhooks")

HUEY = {
    "huey_class": "huey.RedisHuey",
    "name": _QUEUE,
    "url": f"unix://{_REDIS}",
    "results": False,
    "immediate": False,
    "consumer": {"workers": 4, "worker_type": "process"},
}

Q_CLUSTER = {
    "name": _QUEUE,
    "workers": 4,
    "timeout": 60,
    "retry": 120,
    "redis": {"unix_socket_path": _REDIS, "db": 0},
    "scheduler": False,
    "catch_up": False,
}
