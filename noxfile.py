"""The support matrix: each session installs its versions and runs pytest.

    nox -l                       # list the sessions
    nox                          # every session below (scripts/test --matrix runs this)
    nox -s py313-django61        # one session
    nox -R -s gunicorn23         # reuse its venv and skip the install (local reruns)
    nox -s unit                  # the unit tier alone: seconds, no server (scripts/test --unit)
    nox -s support-table         # print the table of what ran (support-table --write: docs/support.md)
    nox -s docs                  # build the documentation site (warnings are errors)

Each pytest run appends one line to .results/support.jsonl (tests/plugins/support.py); no
session writes a tracked file. The tests start an embedded PostgreSQL unless
FORKHOOKS_TEST_DSN is set.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
from pathlib import Path

import nox

nox.options.reuse_venv = "yes"  # a venv is created on first use (CI's fresh clone) and reused after
nox.options.error_on_missing_interpreters = True  # a missing Python fails, never skips quietly

GUNICORN_NEWEST = "27.*"
GUNICORN_OLDEST = "23.0.0"  # pyproject's gunicorn>=23
# What starts gunicorn or runs its hooks (tracked_pool: psycopg2, psycopg_pool, SQLAlchemy under gunicorn),
# plus both drivers' discard (psycopg 3 and psycopg2).
GUNICORN_SUBSET = "gunicorn or hooks or discard or tracked_pool"

PYPROJECT = nox.project.load_toml("pyproject.toml")

MATRIX = ["py311-django52", "py312-django60", "py313-django61", "gunicorn23"]
# What runs once, in the py311 session (what `scripts/test` runs), and nowhere else in the matrix:
# - `slow` cases (outages, many stops, the job runners, pgbouncer, MySQL) prove one behaviour, not a version;
# - modules about the database server, faults under load, stops, the CLI, bad input and the benchmark:
#   their behaviour depends on gunicorn, uWSGI and PostgreSQL, not on the Python or Django version.
ONCE = ("-m", "not slow")
ONCE_MODULES = [
    "test_bench.py",
    "test_faults.py",
    "test_input.py",
    "test_operator.py",
    "test_outage.py",
    "test_reaping.py",
    "test_server_faults.py",
    "test_uwsgi_stops.py",
    "test_wagtail.py",
]
NOT_ONCE = (*ONCE, *(f"--ignore=tests/{module}" for module in ONCE_MODULES))
# The middle version pair runs the core of the suite: discard, forks, hooks, gunicorn, tracked pools, Celery, RQ.
CORE = [
    f"tests/{module}"
    for module in (
        "unit",
        "test_discard.py",
        "test_forks.py",
        "test_hooks.py",
        "test_gunicorn.py",
        "test_tracked.py",
        "test_celery.py",
        "test_rq.py",
    )
]


def _python(version: str) -> str:
    """pyenv's newest X.Y interpreter if there is one (its shims fail unless X.Y is selected), else X.Y."""
    root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    found = [p for p in root.glob(f"{version}.*/bin/python{version}") if re.fullmatch(r"\d+\.\d+\.\d+", p.parts[-3])]
    found.sort(key=lambda p: tuple(int(n) for n in p.parts[-3].split(".")))
    return str(found[-1]) if found else version


def _tests(session: nox.Session, django: str, gunicorn: str, *pytest_args: str, once: bool = False) -> None:
    """Install forkhooks[test] (and with `once` the test-once group) with these Django and gunicorn; run pytest."""
    if shutil.which("ss") is None:  # the tests count sockets with ss (iproute2), as scripts/test does
        session.run("apt-get", "update", "-qq", external=True)
        session.run("apt-get", "install", "-y", "-qq", "iproute2", external=True)
    groups = nox.project.dependency_groups(PYPROJECT, "test-once") if once else ()
    session.install("-e", ".[test]", f"django=={django}.*", f"gunicorn=={gunicorn}", *groups)
    session.run("python", "-m", "pytest", *pytest_args, *session.posargs)


@nox.session(python=_python("3.11"))
def docs(session: nox.Session) -> None:
    """Build the documentation site (Sphinx, MyST, Furo) with warnings as errors, into docs/_build/html."""
    # The API reference imports the public modules: gunicorn's, uvicorn-worker's, Celery's and RQ's need them.
    session.install("-e", ".[uvicorn,celery,rq]", *nox.project.dependency_groups(PYPROJECT, "docs"))
    session.run("sphinx-build", "-W", "--keep-going", "-q", "-b", "html", "docs", "docs/_build/html")


@nox.session(name="py311-django52", python=_python("3.11"))
def py311_django52(session: nox.Session) -> None:
    """The whole suite, what runs once included: Python 3.11, Django 5.2 LTS, gunicorn 27."""
    _tests(session, "5.2", GUNICORN_NEWEST, once=True)


@nox.session(name="py312-django60", python=_python("3.12"))
def py312_django60(session: nox.Session) -> None:
    """The core of the suite: Python 3.12, Django 6.0, gunicorn 27."""
    _tests(session, "6.0", GUNICORN_NEWEST, *ONCE, *(p for p in CORE if Path(p).exists()))


@nox.session(name="py313-django61", python=_python("3.13"))
def py313_django61(session: nox.Session) -> None:
    """The suite but what runs once (ONCE, ONCE_MODULES): Python 3.13, Django 6.1, gunicorn 27."""
    _tests(session, "6.1", GUNICORN_NEWEST, *NOT_ONCE)


@nox.session(name="gunicorn23", python=_python("3.11"))
def gunicorn23(session: nox.Session) -> None:
    """The gunicorn tests on the oldest gunicorn claimed (23.0.0): Python 3.11, Django 5.2."""
    _tests(session, "5.2", GUNICORN_OLDEST, "-k", GUNICORN_SUBSET, *ONCE)


# The unit tier (tests/unit): pure functions in-process, no server, so only what they import.
# PyMySQL (pure Python): the MySQL unit tests build its connection objects on socketpairs.
UNIT_DEPS = ("django>=5.2", "gunicorn>=23", "pytest>=8", "pytest-timeout>=2.3", "hypothesis>=6.100", "PyMySQL>=1.1")


@nox.session(python=_python("3.11"), default=False)
def unit(session: nox.Session) -> None:
    """The unit tier alone, in seconds and without PostgreSQL (scripts/test --unit); the sessions above run it too."""
    session.install("-e", ".", *UNIT_DEPS)
    session.run("python", "-m", "pytest", "tests/unit", "-m", "unit", *session.posargs)


@nox.session(name="support-table", python=False, default=False)
def support_table(session: nox.Session) -> None:
    """Print the support table from .results/support.jsonl (docs/support.md is left alone)."""
    session.run(sys.executable, "scripts/support-table", *MATRIX, external=True)


@nox.session(python=_python("3.11"), default=False)
def lint(session: nox.Session) -> None:
    """ruff and mypy, as scripts/test runs them (not in the default run)."""
    session.install("-e", ".[test]", "django==5.2.*")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")
    session.run("mypy")
