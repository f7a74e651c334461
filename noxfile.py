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
from dataclasses import dataclass
from pathlib import Path

import nox

nox.options.reuse_venv = "yes"  # a venv is created on first use (CI's fresh clone) and reused after
nox.options.error_on_missing_interpreters = True  # a missing Python fails, never skips quietly

PYPROJECT = nox.project.load_toml("pyproject.toml")
HERE = Path(__file__).parent

GUNICORN_NEWEST = "27.*"
GUNICORN_OLDEST = "23.0.0"  # pyproject's gunicorn>=23
# What starts gunicorn or runs its hooks (tracked_pool: psycopg2, psycopg_pool, SQLAlchemy under gunicorn),
# plus both drivers' discard (psycopg 3 and psycopg2).
GUNICORN_SUBSET = "gunicorn or hooks or discard or tracked_pool"

# `slow` cases (outages, many stops, the job runners, pgbouncer, MySQL) prove one behaviour, not a
# version: they run once, in py311 (what `scripts/test` runs), and the other sessions leave them out.
NOT_SLOW = ("-m", "not slow")
# The core of the suite: what every version pair runs.
CORE = (
    "unit",
    "test_discard.py",
    "test_forks.py",
    "test_hooks.py",
    "test_gunicorn.py",
    "test_tracked.py",
    "test_celery.py",
    "test_rq.py",
)
# What else depends on the Python version: uWSGI's and gevent's interplay with the interpreter,
# signals at a stop, a pool closed from its own thread, the wheel and the demo.
VERSION_SENSITIVE = (
    "test_uwsgi.py",
    "test_gevent.py",
    "test_stops.py",
    "test_close_in_pool_thread.py",
    "test_demo.py",
    "test_layout.py",
)


def _modules(*names: str) -> tuple[str, ...]:
    return tuple(f"tests/{name}" for name in names if (HERE / "tests" / name).exists())


@dataclass(frozen=True)
class Run:
    """One session of the matrix: its versions and the tests it runs."""

    python: str
    django: str
    gunicorn: str
    pytest_args: tuple[str, ...]
    doc: str
    groups: tuple[str, ...] = ("test",)


RUNS = {
    "py311-django52": Run(
        "3.11",
        "5.2",
        GUNICORN_NEWEST,
        (),
        "The whole suite, the slow cases included: Python 3.11, Django 5.2 LTS, gunicorn 27.",
        ("test", "test-once"),
    ),
    "py312-django60": Run(
        "3.12", "6.0", GUNICORN_NEWEST, (*NOT_SLOW, *_modules(*CORE)), "The core: Python 3.12, Django 6.0, gunicorn 27."
    ),
    "py313-django61": Run(
        "3.13",
        "6.1",
        GUNICORN_NEWEST,
        (*NOT_SLOW, *_modules(*CORE, *VERSION_SENSITIVE)),
        "The core and what depends on the Python version: Python 3.13, Django 6.1, gunicorn 27.",
    ),
    "gunicorn23": Run(
        "3.11",
        "5.2",
        GUNICORN_OLDEST,
        ("-k", GUNICORN_SUBSET, *NOT_SLOW),
        "The gunicorn tests on the oldest gunicorn claimed (23.0.0): Python 3.11, Django 5.2.",
    ),
}
MATRIX = list(RUNS)


def _python(version: str) -> str:
    """pyenv's newest X.Y interpreter if there is one (its shims fail unless X.Y is selected), else X.Y."""
    root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    found = [p for p in root.glob(f"{version}.*/bin/python{version}") if re.fullmatch(r"\d+\.\d+\.\d+", p.parts[-3])]
    found.sort(key=lambda p: tuple(int(n) for n in p.parts[-3].split(".")))
    return str(found[-1]) if found else version


def _groups(*names: str) -> list[str]:
    """The requirements of pyproject's [dependency-groups] `names`."""
    return [req for name in names for req in nox.project.dependency_groups(PYPROJECT, name)]


@nox.session(python=_python("3.11"))
def docs(session: nox.Session) -> None:
    """Build the documentation site (Sphinx, MyST, Furo) with warnings as errors, into docs/_build/html."""
    # The API reference imports the public modules: gunicorn's, uvicorn-worker's, Celery's and RQ's need them.
    session.install("-e", ".[uvicorn,celery,rq]", *_groups("docs"))
    session.run("sphinx-build", "-W", "--keep-going", "-q", "-b", "html", "docs", "docs/_build/html")


def _session(name: str, run: Run) -> None:
    """Define the nox session `name` from its row of RUNS."""

    def tests(session: nox.Session) -> None:
        if shutil.which("ss") is None:  # the tests count sockets with ss (iproute2), as scripts/test does
            session.run("apt-get", "update", "-qq", external=True)
            session.run("apt-get", "install", "-y", "-qq", "iproute2", external=True)
        session.install("-e", ".", *_groups(*run.groups), f"django=={run.django}.*", f"gunicorn=={run.gunicorn}")
        session.run("python", "-m", "pytest", *run.pytest_args, *session.posargs)

    tests.__doc__ = run.doc
    tests.__name__ = name.replace("-", "_")
    nox.session(name=name, python=_python(run.python))(tests)


for _name, _run in RUNS.items():
    _session(_name, _run)


@nox.session(python=_python("3.11"), default=False)
def unit(session: nox.Session) -> None:
    """The unit tier alone, in seconds and without PostgreSQL (scripts/test --unit); the sessions above run it too."""
    session.install("-e", ".", *_groups("unit"))
    session.run("python", "-m", "pytest", "tests/unit", "-m", "unit", *session.posargs)


@nox.session(name="support-table", python=False, default=False)
def support_table(session: nox.Session) -> None:
    """Print the support table from .results/support.jsonl (docs/support.md is left alone)."""
    session.run(sys.executable, "scripts/support-table", *MATRIX, external=True)


@nox.session(python=_python("3.11"), default=False)
def lint(session: nox.Session) -> None:
    """ruff and mypy, as scripts/test runs them (not in the default run)."""
    session.install("-e", ".", *_groups("dev"))
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")
    session.run("mypy")
