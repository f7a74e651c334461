"""Django app: ``INSTALLED_APPS += ["forkhooks.django"]`` discards inherited connections in every forked child."""
