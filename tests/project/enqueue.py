"""Enqueue jobs the way a project does, from a process of its own (the tests' process does not set Django up).

    DJANGO_SETTINGS_MODULE=tests.project.settings_runners_without \
        python -m tests.project.enqueue huey|q2 echo|slow ARG...     # one job per ARG
"""

from __future__ import annotations

import sys


def main(argv: list[str]) -> None:
    """Enqueue one `job` per argument with Huey or django-q2."""
    import django

    django.setup()
    runner, job, *args = argv
    if runner == "huey":
        from tests.project.runnerapp import tasks

        task = {"echo": tasks.echo, "slow": tasks.slow}[job]
        for arg in args:
            task(float(arg) if job == "slow" else arg)
    else:
        from django_q.tasks import async_task

        for arg in args:
            async_task(f"tests.project.jobs.{job}", float(arg) if job == "slow" else arg)
    print(f"enqueued {len(args)}")


if __name__ == "__main__":
    main(sys.argv[1:])
