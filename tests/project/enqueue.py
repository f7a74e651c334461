"""Enqueue jobs the way a project does, from a process of its own (the tests' process does not set Django up).

    DJANGO_SETTINGS_MODULE=tests.project.settings_runners_without \
        python -m tests.project.enqueue huey|q2|scheduler echo|slow ARG...     # one job per ARG

(scheduler: django-tasks-scheduler, with DJANGO_SETTINGS_MODULE=tests.project.settings_sched_without)
"""

from __future__ import annotations

import sys


def main(argv: list[str]) -> None:
    """Enqueue one `job` per argument with Huey, django-q2 or django-tasks-scheduler."""
    import django

    django.setup()
    runner, job, *args = argv
    if runner == "huey":
        from tests.project.runnerapp import tasks

        task = {"echo": tasks.echo, "slow": tasks.slow}[job]
        for arg in args:
            task(float(arg) if job == "slow" else arg)
    elif runner == "scheduler":
        from scheduler.helpers.queues import get_queue

        from tests.project import jobs

        queue = get_queue("default")
        for arg in args:
            queue.create_and_enqueue_job(
                {"echo": jobs.echo, "slow": jobs.slow}[job], args=(float(arg) if job == "slow" else arg,), timeout=120
            )
    else:
        from django_q.tasks import async_task

        for arg in args:
            async_task(f"tests.project.jobs.{job}", float(arg) if job == "slow" else arg)
    print(f"enqueued {len(args)}")


if __name__ == "__main__":
    main(sys.argv[1:])
