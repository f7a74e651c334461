# forkhooks' hooks, except that post_worker_init only warms: what a hand-written conf that calls
# forkhooks.warm() does. Under uvicorn-worker a stop signal then kills workers before worker_exit.
import forkhooks
from forkhooks.gunicorn import *  # noqa: F403


def post_worker_init(worker):
    forkhooks.warm()
