# Bench-only gunicorn conf: forkhooks' hooks, then gc.freeze() in the master
# just before the first fork, so the workers' collector never walks (and so
# never writes to) the objects the master loaded with --preload.
#   gunicorn -c bench/gunicorn_gcfreeze.py --preload -w 4 tests.testsite.wsgi:application
import gc

import forkhooks.gunicorn as fh
from forkhooks.gunicorn import *  # noqa: F403


def when_ready(server):
    fh.when_ready(server)  # ours first: close the master's pool, so nothing live gets frozen
    gc.freeze()
    server.log.info("bench: gc.freeze() in the master, %d objects frozen", gc.get_freeze_count())
