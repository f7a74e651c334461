"""The connection budget's plan: workers x (pool max_size, or threads) per PostgreSQL server, from DATABASES."""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from forkhooks._tools import budget
from forkhooks._tools.budget import Budget, plan, pool_max_size

pytestmark = pytest.mark.unit

PG = "django.db.backends.postgresql"


@contextmanager
def databases(settings: dict[str, dict[str, Any]]) -> Iterator[None]:
    """Django's real connection handler over `settings`, in place of django.db.connections for the block.

    Configuring Django in the test process would last for the whole run: a handler of its own does not.
    """
    import django.db
    from django.db.utils import ConnectionHandler

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(django.db, "connections", ConnectionHandler(settings))
        yield


@pytest.mark.parametrize(
    ("options", "size"),
    [
        ({}, None),
        ({"pool": False}, None),
        ({"pool": True}, 4),  # psycopg_pool's default min_size, and max_size defaults to it
        ({"pool": {"min_size": 2}}, 2),
        ({"pool": {"min_size": 2, "max_size": 9}}, 9),
        ({"pool": {"max_size": "7"}}, 7),
    ],
)
def test_pool_max_size_follows_psycopg_pool_defaults(options: dict[str, Any], size: int | None) -> None:
    """OPTIONS['pool'] as Django passes it to psycopg_pool: max_size, else min_size, else 4."""
    assert pool_max_size(options) == size


@given(
    workers=st.integers(1, 64),
    threads=st.integers(1, 16),
    dirty_workers=st.integers(0, 8),
    dirty_threads=st.integers(1, 4),
    pool=st.none() | st.integers(1, 50),
)
def test_plan_sums_workers_times_pool_or_threads(
    workers: int, threads: int, dirty_workers: int, dirty_threads: int, pool: int | None
) -> None:
    """One server: each worker opens up to max_size with a pool, else one connection per thread."""
    options = {"pool": {"max_size": pool}} if pool else {}
    with databases({"default": {"ENGINE": PG, "HOST": "db", "PORT": "5433", "OPTIONS": options}}):
        (only,) = plan(workers, threads, dirty_workers, dirty_threads)
    per_worker, per_dirty = (pool, pool) if pool else (threads, dirty_threads)
    assert only.server == "db:5433"
    assert only.need == workers * per_worker + dirty_workers * per_dirty
    assert len(only.terms) == (2 if dirty_workers else 1)
    assert only.available is None and only.unknown and not only.over


def test_plan_groups_aliases_by_server_and_skips_other_engines() -> None:
    """Two aliases on one server add up; another server has its own budget; SQLite is not counted."""
    settings = {
        "default": {"ENGINE": PG, "HOST": "", "OPTIONS": {"pool": {"max_size": 5}}},
        "replica": {"ENGINE": PG, "HOST": "localhost", "PORT": 5432},
        "reports": {"ENGINE": PG, "HOST": "other", "OPTIONS": {"pool": True}},
        "cache": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"},
    }
    with databases(settings):
        budgets = {b.server: b for b in plan(3, threads=2)}
    assert set(budgets) == {"localhost:5432", "other:5432"}
    assert budgets["localhost:5432"].need == 3 * 5 + 3 * 2
    assert budgets["localhost:5432"].terms == [
        "3 workers x 5 (pool max_size 'default')",
        "3 workers x 2 (threads, 'replica' without pool)",
    ]
    assert budgets["other:5432"].need == 3 * 4


def test_no_postgresql_no_budget() -> None:
    """A project without PostgreSQL, or without Django configured, plans nothing."""
    with databases({"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}):
        assert plan(4) == []


@given(need=st.integers(0, 10_000), available=st.integers(0, 10_000))
def test_over_budget_means_more_than_the_server_allows(need: int, available: int) -> None:
    """over is need > available; the line says fits or over budget, and the fix names the numbers."""
    b = Budget("db:5432", "default", need=need, terms=[f"{need} workers x 1"], available=available, limits="x")
    assert b.over == (need > available)
    assert str(b).endswith("over budget" if b.over else "fits")
    assert f"<= {available}" in b.fix() and f"max_client_conn >= {need}" in b.fix()


def test_a_mysql_budget_fix_names_no_postgresql_pooler() -> None:
    """MySQL has no pgbouncer and Django's MySQL backend no pool: the fix says workers, threads, max_connections."""
    b = Budget("db:3306", "default", need=40, terms=["10 workers x 4 threads"], available=30, limits="x", mysql=True)
    assert b.over and "<= 30" in b.fix() and "max_connections" in b.fix()
    assert "pgbouncer" not in b.fix() and "pool max_size" not in b.fix()


def test_an_unknown_limit_says_why() -> None:
    """A server whose limits could not be read is unknown, never over, and the line says why."""
    b = Budget("db:5432", "default", need=8, terms=["8 workers x 1"], limits="cannot connect: refused")
    assert b.unknown and not b.over
    assert str(b) == "db:5432: 8 workers x 1 = 8 connections; server limit unknown (cannot connect: refused)"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--workers", "0"], "argument --workers: must be >= 1, got 0"),
        (["--workers", "two"], "argument --workers: must be a whole number >= 1, got 'two'"),
        (["--workers", "2", "--dirty-workers", "-1"], "argument --dirty-workers: must be >= 0, got -1"),
        (["--workers", "2", "--threads", "1.5"], "argument --threads: must be a whole number >= 1, got '1.5'"),
    ],
)
def test_check_options_refuse_bad_numbers_in_one_line(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """`forkhooks check` with a bad number: usage error (status 2) naming the option and the value."""
    parser = argparse.ArgumentParser(prog="forkhooks check")
    budget.add_arguments(parser)
    with pytest.raises(SystemExit) as exited:
        parser.parse_args(argv)
    assert exited.value.code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == f"forkhooks check: error: {message}"


def test_check_options_take_good_numbers() -> None:
    """Good numbers parse to ints, with the documented defaults."""
    parser = argparse.ArgumentParser()
    budget.add_arguments(parser)
    args = parser.parse_args(["--workers", "4"])
    assert (args.workers, args.threads, args.dirty_workers, args.dirty_threads) == (4, 1, 0, 1)


def test_mysql_aliases_on_two_unix_sockets_are_two_servers() -> None:
    """A MySQL Unix socket (OPTIONS["unix_socket"], or a HOST path) names its server: two sockets, two budgets."""
    my = "django.db.backends.mysql"
    settings = {
        "default": {"ENGINE": my, "HOST": "", "OPTIONS": {"unix_socket": "/run/a/mysqld.sock"}},
        "other": {"ENGINE": my, "HOST": "/run/b/mysqld.sock"},
        "tcp": {"ENGINE": my, "HOST": "", "PORT": ""},
    }
    with databases(settings):
        budgets = {b.server: b for b in plan(2)}
    assert set(budgets) == {"/run/a/mysqld.sock", "/run/b/mysqld.sock", "localhost:3306"}
    assert all(b.mysql and b.need == 2 for b in budgets.values())
