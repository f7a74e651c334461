"""Replace django-celery-beat's schedule with one periodic task: `echo` every second, its tag its own name.

DJANGO_SETTINGS_MODULE=tests.project.settings_beat_without python -m tests.project.beat_schedule
"""

from __future__ import annotations

import json

NAME = "every-1s"  # the periodic task's name, and the tag each run answers


def main() -> None:
    """Delete every periodic task and schedule, then add NAME (interval 1 s)."""
    import django

    django.setup()
    from django_celery_beat.models import IntervalSchedule, PeriodicTask, PeriodicTasks

    PeriodicTask.objects.all().delete()
    IntervalSchedule.objects.all().delete()
    every = IntervalSchedule.objects.create(every=1, period=IntervalSchedule.SECONDS)
    PeriodicTask.objects.create(name=NAME, task="echo", interval=every, args=json.dumps([NAME]))
    PeriodicTasks.update_changed()
    print("scheduled", NAME)


if __name__ == "__main__":
    main()
