"""Control on psycopg2: the same project without forkhooks.django."""

from .settings_psycopg2 import *  # noqa: F403

INSTALLED_APPS: list[str] = []
