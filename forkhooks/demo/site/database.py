"""Turn a libpq DSN (URI or key=value) into a Django DATABASES entry."""

from __future__ import annotations

from typing import Any


def django_database(dsn: str, *, pool: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    """Build DATABASES['default'] from `dsn`; `pool` turns Django's psycopg pool on."""
    params = _parse(dsn) if dsn else {}
    options: dict[str, Any] = {}
    if pool is not None:
        options["pool"] = dict(pool)
    keys = {"dbname": "NAME", "host": "HOST", "port": "PORT", "user": "USER", "password": "PASSWORD"}
    entry: dict[str, Any] = {"ENGINE": "django.db.backends.postgresql", "OPTIONS": options}
    for key, value in params.items():
        if key in keys:
            entry[keys[key]] = value
        else:
            options[key] = value  # sslmode, application_name, ... go to the driver
    entry.setdefault("NAME", "postgres")
    entry.update(extra)
    return entry


def _parse(dsn: str) -> dict[str, Any]:
    try:
        from psycopg.conninfo import conninfo_to_dict
    except ImportError:  # a psycopg2-only environment
        from psycopg2.extensions import parse_dsn

        return dict(parse_dsn(dsn))
    return dict(conninfo_to_dict(dsn))
