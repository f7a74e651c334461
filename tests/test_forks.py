"""Generic fork points: a Django process with a persistent connection forks children that query.

Each case runs tests/project/forks.py in a subprocess with its own settings
module, so the pytest process never forks with a connection open.
"""

from __future__ import annotations

from typing import Any

import pytest

from forkhooks.demo.loadgen import Results

from .record import record
from .servers import run_json

FORKS = 250  # os.fork(): one child per fork (1000 measured once: the same, four times slower)
TASKS = 200  # ProcessPoolExecutor / multiprocessing.Pool: 4 forked workers share these

WITH = "tests.project.settings"  # INSTALLED_APPS = ["forkhooks.django"]
WITH_PSYCOPG2 = "tests.project.settings_psycopg2"
WITHOUT = "tests.project.settings_without"
WITHOUT_PSYCOPG2 = "tests.project.settings_without_psycopg2"


def forks(dsn: str, settings: str, *args: str, timeout: float = 180) -> dict[str, Any]:
    """Run one scenario of tests/project/forks.py and return its JSON line of counts."""
    out: dict[str, Any] = run_json(
        "tests.project.forks", *args, dsn=dsn, env={"DJANGO_SETTINGS_MODULE": settings}, timeout=timeout
    )[0]
    return out


def save(suite: str, case: str, out: dict[str, Any]) -> None:
    """Record children's answers as requests, so the run's table shows them."""
    results = Results(
        requests=out["forks"],
        ok=out["ok"],
        failed=out["child_errors"] + out["forks"] - out["answers"],
        wrong=out["wrong"] + out["shared"],  # an answer from the parent's backend is not the child's own
    )
    record(suite, case, results, parent_errors=out["parent_errors"], parent_backends=out["parent_backends"])


def assert_parent_kept_its_session(out: dict[str, Any]) -> None:
    assert out["parent_errors"] == 0, out["parent_error"]
    assert out["parent_backends"] == 1, out  # never reconnected
    assert out["parent_backend_after"] == out["parent_backend_before"], out


def assert_children_had_their_own(out: dict[str, Any], n: int) -> None:
    assert out["answers"] == n, out
    assert (out["ok"], out["wrong"], out["shared"], out["child_errors"]) == (n, 0, 0, 0), out


@pytest.mark.fork
@pytest.mark.parametrize("settings", [WITH, WITH_PSYCOPG2], ids=["psycopg", "psycopg2"])
def test_os_fork_children_get_their_own_connection(dsn: str, settings: str) -> None:
    """250 os.fork() children each query on a new backend; the parent keeps its session throughout."""
    out = forks(dsn, settings, "os.fork", "--n", str(FORKS))
    save("forks", f"os.fork-{out['driver']}", out)
    assert_children_had_their_own(out, FORKS)
    assert_parent_kept_its_session(out)


@pytest.mark.fork
@pytest.mark.parametrize("scenario", ["executor", "mp.pool"])
def test_process_pools_get_their_own_connections(dsn: str, scenario: str) -> None:
    """ProcessPoolExecutor / multiprocessing.Pool (fork): each worker has its own backend, the parent keeps its."""
    out = forks(dsn, WITH, scenario, "--n", str(TASKS))
    save("forks", scenario, out)
    assert_children_had_their_own(out, TASKS)
    assert out["child_processes"] == out["child_backends"] == 4, out
    assert_parent_kept_its_session(out)


@pytest.mark.fork
@pytest.mark.parametrize("scenario", ["os.fork", "executor", "mp.pool"])
def test_naive_close_in_the_child_is_harmless_with_forkhooks(dsn: str, scenario: str) -> None:
    """With forkhooks the blog post's connection.close() in the child closes nothing of the parent's."""
    out = forks(dsn, WITH, scenario, "--n", "50", "--naive-close")
    save("forks", f"{scenario}-naive-close", out)
    assert_children_had_their_own(out, 50)
    assert_parent_kept_its_session(out)


@pytest.mark.fork
@pytest.mark.parametrize("settings", [WITH, WITH_PSYCOPG2], ids=["psycopg", "psycopg2"])
def test_fork_while_another_thread_holds_a_connection(dsn: str, settings: str) -> None:
    """A thread holding its own connection across 50 forks keeps its backend; children get their own."""
    out = forks(dsn, settings, "thread", "--n", "50")
    save("forks", f"thread-{out['driver']}", out)
    assert_children_had_their_own(out, 50)
    assert_parent_kept_its_session(out)
    assert "thread_error" not in out, out["thread_error"]
    assert out["thread_backend_after"] == out["thread_backend_before"], out


# Controls: the same scenarios without forkhooks.django. Children that share the
# parent's socket concurrently can hang on a stolen reply, so controls use forms
# that fail deterministically: the naive close, or children run one at a time.


@pytest.mark.fork
@pytest.mark.parametrize("scenario", ["os.fork", "executor", "mp.pool"])
def test_control_naive_close_kills_the_parents_session(dsn: str, scenario: str) -> None:
    """Without forkhooks, connection.close() in a child sends Terminate down the parent's socket."""
    out = forks(dsn, WITHOUT, scenario, "--n", "50", "--naive-close")
    save("forks-control", f"{scenario}-naive-close", out)
    assert out["parent_errors"] > 0, out
    assert "server closed the connection unexpectedly" in out["parent_error"], out
    assert out["parent_backend_after"] != out["parent_backend_before"], out


@pytest.mark.fork
@pytest.mark.parametrize(
    ("settings", "scenario"),
    [(WITHOUT, "os.fork"), (WITHOUT_PSYCOPG2, "os.fork"), (WITHOUT_PSYCOPG2, "thread")],
    ids=["psycopg", "psycopg2", "thread-psycopg2"],
)
def test_control_children_share_the_parents_backend(dsn: str, settings: str, scenario: str) -> None:
    """Without forkhooks (and without the naive close) every child talks on the parent's socket."""
    out = forks(dsn, settings, scenario, "--n", "100", "--sequential")
    save("forks-control", f"{scenario}-{out['driver']}-shared", out)
    assert out["shared"] == out["answers"] == 100, out
    assert out["child_backends"] == 1, out


# Forkserver: a forkserver that preloads a module setting Django up and querying holds a connection, and
# every process it forks inherits it (Python 3.14 makes forkserver the default start method on Linux).


@pytest.mark.fork
def test_forkserver_preload_children_get_their_own_connection(dsn: str) -> None:
    """Pool(4) workers forked by a forkserver that preloaded Django and queried: each on its own backend."""
    out = forks(dsn, WITH, "forkserver", "--n", str(TASKS))
    save("forks", "forkserver-preload", out)
    assert out["preload_backends"] == 1, out  # the forkserver did hold a connection when it forked them
    assert_children_had_their_own(out, TASKS)
    # One backend per worker; a worker that starts late on a busy machine may get no task at all.
    assert out["child_processes"] == out["child_backends"] >= 2, out
    assert_parent_kept_its_session(out)


@pytest.mark.fork
def test_control_forkserver_children_share_the_preloaded_connection(dsn: str) -> None:
    """Without forkhooks, the forkserver's pool worker talks on the forkserver's socket (one worker: no hang)."""
    out = forks(dsn, WITHOUT, "forkserver", "--n", "20", "--processes", "1")
    save("forks-control", "forkserver-preload-shared", out)
    assert out["shared"] == out["answers"] == 20, out
    assert out["child_backends"] == 1, out


@pytest.mark.fork
def test_maxtasksperchild_replacements_get_their_own_connection(dsn: str) -> None:
    """Pool(4, maxtasksperchild=10): ~20 replacements forked from the pool's handler thread, each on its own backend."""
    out = forks(dsn, WITH, "mp.maxtasks", "--n", str(TASKS), "--maxtasks", "10")
    save("forks", "mp.maxtasks-replacements", out)
    assert_children_had_their_own(out, TASKS)
    assert out["child_processes"] >= TASKS // 10, out  # the replacements did run
    assert_parent_kept_its_session(out)


@pytest.mark.fork
def test_replacements_from_the_handler_thread_do_not_inherit_the_main_threads_connection(dsn: str) -> None:
    """Why the test above has no failing control: Django's connections are per thread, and a replacement is
    forked from the pool's handler thread, so without forkhooks too it opens its own (the first processes,
    forked from the main thread, do share: see the mp.pool tests)."""
    out = forks(dsn, WITHOUT, "mp.maxtasks", "--n", "20", "--processes", "2", "--maxtasks", "2")
    save("forks-control", "mp.maxtasks-replacements", out)
    assert out["child_processes"] >= 10, out
    assert (out["shared"], out["parent_errors"]) == (0, 0), out
