# Already have hooks? Call forkhooks' from yours. gunicorn checks each hook's
# arity, so keep gunicorn's positional arguments and pass options by keyword.
#   gunicorn -c gunicorn_conf/own_hooks.py forkhooks.demo.site.wsgi:application
import forkhooks.gunicorn as fh

preload_app = True
workers = 4

# Hooks you do not customise can be taken as they are.
when_ready = fh.when_ready
pre_fork = fh.pre_fork
worker_exit = fh.worker_exit
worker_abort = fh.worker_abort
worker_int = fh.worker_int
child_exit = fh.child_exit  # master: end the backends of a worker killed mid-query
on_exit = fh.on_exit  # master: the same for workers the stop SIGKILLed last


def post_fork(server, worker):
    fh.post_fork(server, worker)  # first: nothing may use an inherited connection
    server.log.info("my post_fork for worker %s", worker.pid)


def post_worker_init(worker):
    fh.post_worker_init(worker, timeout=5.0)  # options are keyword-only
    worker.log.info("my post_worker_init")
