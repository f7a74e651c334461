"""Control: the same project without forkhooks.django."""

from .settings import *  # noqa: F403

INSTALLED_APPS: list[str] = []
