# Control for the MySQL gthread test: forkhooks' hooks, but a worker's close sees only the thread
# that calls it (as forkhooks did before it tracked every thread's wrappers).
from forkhooks._core import djangodb
from forkhooks.gunicorn import *  # noqa: F403
from forkhooks.gunicorn import post_fork as _post_fork


def post_fork(server, worker):
    _post_fork(server, worker)
    djangodb.wrappers = djangodb.current_thread_wrappers
