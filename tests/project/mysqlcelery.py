"""A Celery app on the test Redis with the MySQL site (tests/project/mysqlsite); FORKHOOKS_TEST_CELERY=1 adds forkhooks.

The worker's main process holds a session at fork (a worker_init receiver, as a
start-up check would) and checks its session again at shutdown.
"""

from __future__ import annotations

import os

if os.environ.get("FORKHOOKS_TEST_CELERY") == "1":
    import forkhooks.celery  # noqa: F401  (the one line a project adds)

from celery import Celery, signals

from . import jobs, mysqljobs

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.project.mysqlsite.settings")

app = Celery("forkhooks-mysql-test", broker=f"redis+socket://{os.environ.get('FORKHOOKS_TEST_REDIS', '')}")
app.conf.update(broker_connection_retry_on_startup=True, task_ignore_result=True, worker_prefetch_multiplier=1)


@app.task(name="echo")
def echo(tag: str) -> None:
    """Answer `tag` through MySQL."""
    mysqljobs.echo(tag)


def _parent(when: str) -> None:
    try:
        jobs.push(jobs.PARENT, {"when": when, "backend": mysqljobs.session(), "pid": os.getpid()})
    except Exception as exc:
        jobs.push(jobs.PARENT, {"when": when, "error": f"{type(exc).__name__}: {exc}"[:200], "pid": os.getpid()})


@signals.worker_init.connect
def _hold(**kwargs: object) -> None:
    _parent("before")


@signals.worker_ready.connect
def _ready(**kwargs: object) -> None:
    jobs.client().set("forkhooks:ready", os.getpid())


@signals.worker_shutdown.connect
def _check(**kwargs: object) -> None:
    _parent("after")
