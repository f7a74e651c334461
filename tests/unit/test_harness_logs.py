"""The harness's one parser of forkhooks' log lines, on lines as gunicorn, uWSGI and Celery print them."""

from __future__ import annotations

import pytest

from tests.harness import LogLine, forkhooks_lines, logged_pids

pytestmark = pytest.mark.unit

LOG = """\
[2026-12-02 01:00:00 +0000] [100] [INFO] Booting worker with pid: 101
[2026-12-02 01:00:00 +0000] [101] [INFO] forkhooks: worker 101 opened 'default' (2 connections)
WARNING forkhooks: FORKHOOKS_WARM='maybe' is not one of 1/0/true/false/yes/no/on/off; using the default, on
forkhooks: worker 102 discarded 1 connection
[2026-12-02 01:00:01,000: INFO/ForkPoolWorker-1] forkhooks: celery worker 103 opened 'default' (2 connections)
forkhooks: master 100 ended 1 backend(s) of worker 104, which died without closing them
WARNING forkhooks: worker 105: harakiri: cancelled 1 running query(ies)
forkhooks: dirty arbiter 106 ended 2 backend(s) of dirty worker 107, which died without closing them
forkhooks: connection budget localhost:5432: 4 workers x 2 = 8 connections; server allows 97 (...): fits
[2026-12-02 01:00:02 +0000] [101] [INFO] forkhooks: worker 101 closed 0 connections and 1 pool
"""


def test_every_process_line_is_read_and_nothing_else() -> None:
    """Lines about a process, whatever the server's prefix; settings and budget lines are not about one."""
    found = forkhooks_lines(LOG)
    assert [(line.who, line.pid) for line in found] == [
        ("worker", 101),
        ("worker", 102),
        ("celery worker", 103),
        ("master", 100),
        ("worker", 105),
        ("dirty arbiter", 106),
        ("worker", 101),
    ]
    assert found[0] == LogLine(1, "worker", 101, "opened 'default' (2 connections)")
    assert found[4].text == "harakiri: cancelled 1 running query(ies)"


def test_pids_by_role_and_text() -> None:
    """logged_pids() picks one role's lines by the start of their text."""
    assert logged_pids(LOG, "opened") == {101}
    assert logged_pids(LOG, "opened", who="celery worker") == {103}
    assert logged_pids(LOG, r"closed \d+ connections? and 1 pool") == {101}
    assert logged_pids(LOG, "ended", who="master") == {100}
    assert logged_pids(LOG, "closed", who="master") == set()
