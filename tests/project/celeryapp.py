"""A Celery app on the test Redis, with the Django project of tests/project (DJANGO_SETTINGS_MODULE).

    FORKHOOKS_TEST_CELERY=1 celery -A tests.project.celeryapp worker ...   # with `import forkhooks.celery`

With FORKHOOKS_TEST_PARENT=1 the worker's main process holds a pooled
connection at fork (a worker_init receiver, as a start-up check would) and
checks its session again at shutdown.
"""

from __future__ import annotations

import os

if os.environ.get("FORKHOOKS_TEST_CELERY") == "1":
    import forkhooks.celery  # noqa: F401  (the one line a project adds)

from celery import Celery, signals

from . import jobs

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.project.settings_jobs_without")

app = Celery("forkhooks-test", broker=f"redis+socket://{os.environ.get('FORKHOOKS_TEST_REDIS', '')}")
app.conf.update(
    broker_connection_retry_on_startup=True,
    task_ignore_result=True,
    worker_prefetch_multiplier=1,
    worker_max_tasks_per_child=int(os.environ.get("FORKHOOKS_TEST_MAX_TASKS", "0")) or None,
)


@app.task(name="echo")
def echo(tag: str) -> None:
    """Answer `tag` through PostgreSQL."""
    jobs.echo(tag)


@app.task(name="slow", time_limit=1)
def slow(seconds: float) -> None:
    """A query longer than the hard time limit: billiard kills the process mid-query."""
    jobs.slow(seconds)


@app.task(name="sleep")
def sleep(seconds: float) -> None:
    """A long query and no time limit: only a shutdown stops it."""
    jobs.slow(seconds)


@signals.worker_init.connect
def _hold(**kwargs: object) -> None:
    # Connected after Celery's Django fixup (created with the app above): it runs after the fixup closed
    # the database, as a project's own start-up check does.
    if os.environ.get("FORKHOOKS_TEST_PARENT") == "1":
        jobs.parent_holds_session()


@signals.worker_ready.connect
def _ready(**kwargs: object) -> None:
    jobs.client().set("forkhooks:ready", os.getpid())


@signals.beat_init.connect
def _beat(**kwargs: object) -> None:
    # In the beat process (forked by `worker -B`, or `celery beat` itself), once its scheduler read the schedule.
    if os.environ.get("FORKHOOKS_TEST_BEAT") == "1":
        jobs.beat_session()


@signals.worker_shutdown.connect
def _check(**kwargs: object) -> None:
    if os.environ.get("FORKHOOKS_TEST_PARENT") == "1":
        jobs.parent_checks_session()
