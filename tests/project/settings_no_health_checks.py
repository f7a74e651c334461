"""The example project with CONN_HEALTH_CHECKS off: psycopg_pool gets no check (tests/test_server_faults.py control)."""

from tests.testsite.settings import *  # noqa: F403
from tests.testsite.settings import DATABASES

DATABASES = {"default": {**DATABASES["default"], "CONN_HEALTH_CHECKS": False}}
