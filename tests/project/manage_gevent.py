"""A project's manage.py for gevent: monkey-patch first, then run the command (``run_huey -k greenlet``)."""

from gevent import monkey

monkey.patch_all()

import sys  # noqa: E402

from django.core.management import execute_from_command_line  # noqa: E402

if __name__ == "__main__":
    execute_from_command_line(sys.argv)
