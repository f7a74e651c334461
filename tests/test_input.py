"""Bad input: every command and hook says what is wrong in one line, and never crashes nor passes silently."""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from forkhooks import _core
from forkhooks._core import settings as _settings
from forkhooks._tools import cli
from forkhooks._tools.common import error_text, first_line
from forkhooks.demo import loadgen

from .harness import PYTHON, ROOT, child_env, django_check, forkhooks_cli, forkhooks_lines
from .servers import WSGI, poll, serve

CHECKS = "tests.project.settings_checks"
SITE = "tests.testsite.settings"
SCRIPT = str(Path(PYTHON).parent / "forkhooks")  # the console script, which puts no directory on sys.path
UNREACHABLE_TCP = "host=127.0.0.1 port=1 dbname=x connect_timeout=3"  # nothing listens on port 1: refused
UNREACHABLE_SOCKET = "host=/nonexistent-forkhooks dbname=x"  # no such socket directory


def django_admin(dsn: str, settings: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Run `python -m django ARGS` (what manage.py runs) with `settings`."""
    return subprocess.run(
        [PYTHON, "-m", "django", *args],
        cwd=ROOT,
        env=child_env(dsn, **{"DJANGO_SETTINGS_MODULE": settings, **env}),
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture
def own_database(dsn: str, db: psycopg.Connection) -> Iterator[str]:
    """A DSN to a database of its own, so `migrate` leaves no table in the shared one."""
    db.execute("DROP DATABASE IF EXISTS forkhooks_input WITH (FORCE)")
    db.execute("CREATE DATABASE forkhooks_input")
    try:
        yield make_conninfo(dsn, dbname="forkhooks_input")
    finally:
        db.execute("DROP DATABASE IF EXISTS forkhooks_input WITH (FORCE)")


# -- 1, 8: the connection budget as a Django check -------------------------------------------------


def test_bad_worker_counts_are_a_check_warning_not_a_crash(own_database: str) -> None:
    """WEB_CONCURRENCY=abc, FORKHOOKS_THREADS=-2: `migrate` and `check --database` warn (W004) and go on."""
    env = {"WEB_CONCURRENCY": "abc", "FORKHOOKS_THREADS": "-2"}
    checked = django_admin(own_database, CHECKS, "check", "--database", "default", **env)
    migrated = django_admin(own_database, CHECKS, "migrate", **env)
    for done in (checked, migrated):
        out = done.stdout + done.stderr
        assert done.returncode == 0, out
        assert "Traceback" not in out
        assert (
            "(forkhooks.W004) WEB_CONCURRENCY='abc' is not a whole number >= 1; "
            "the connection budget uses the default, 1" in done.stderr
        )
        assert "(forkhooks.W004) FORKHOOKS_THREADS='-2' is not a whole number >= 1" in done.stderr
    assert "1 workers x 1 (threads, 'default' without pool) = 1 connections" in checked.stdout + checked.stderr
    assert "No migrations to apply" in migrated.stdout


def test_migrate_is_quiet_within_budget_and_warns_over_it(own_database: str) -> None:
    """`migrate` prints no I001 (the budget fits) but still W003 over budget; `check --database` prints I001."""
    fits = django_admin(own_database, CHECKS, "migrate", CASE_POOL_MAX="4", WEB_CONCURRENCY="4")
    over = django_admin(own_database, CHECKS, "migrate", CASE_POOL_MAX="4", WEB_CONCURRENCY="30")
    asked = django_admin(own_database, CHECKS, "check", "--database", "default", CASE_POOL_MAX="4", WEB_CONCURRENCY="4")
    assert fits.returncode == 0, fits.stdout + fits.stderr
    assert "forkhooks.I001" not in fits.stdout + fits.stderr
    assert "No migrations to apply" in fits.stdout
    assert "forkhooks.W003" in over.stderr and "= 120 connections" in over.stderr
    assert asked.returncode == 0, asked.stdout + asked.stderr
    assert "forkhooks.I001" in asked.stdout + asked.stderr and "= 16 connections" in asked.stdout + asked.stderr


# -- 2: option values -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--workers", "-1"], "argument --workers: must be >= 1, got -1"),
        (["--workers", "0"], "argument --workers: must be >= 1, got 0"),
        (["--workers", "abc"], "argument --workers: must be a whole number >= 1, got 'abc'"),
        (["--workers", "2", "--threads", "0"], "argument --threads: must be >= 1, got 0"),
        (["--workers", "2", "--dirty-workers", "-1"], "argument --dirty-workers: must be >= 0, got -1"),
        (["--workers", "2", "--dirty-threads", "0"], "argument --dirty-threads: must be >= 1, got 0"),
    ],
)
def test_check_rejects_counts_below_one(args: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    """Non-positive workers/threads (negative dirty workers) are a usage error: exit 2, one line naming the value."""
    with pytest.raises(SystemExit) as stopped:
        cli.main(["check", *args])
    err = capsys.readouterr().err
    assert stopped.value.code == 2
    assert err.strip().splitlines()[-1] == f"forkhooks check: error: {message}"


def test_check_accepts_the_smallest_counts() -> None:
    """--workers 1 --threads 1 --dirty-workers 0 --dirty-threads 1 parse (the bounds are inclusive)."""
    args = cli.build_parser().parse_args(
        ["check", "--workers", "1", "--threads", "1", "--dirty-workers", "0", "--dirty-threads", "1"]
    )
    assert (args.workers, args.threads, args.dirty_workers, args.dirty_threads) == (1, 1, 0, 1)


@pytest.mark.parametrize("command", ["check", "connections", "demo"])
def test_help_states_the_exit_statuses(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    """`forkhooks COMMAND --help` ends with its exit statuses."""
    with pytest.raises(SystemExit) as stopped:
        cli.main([command, "--help"])
    out = capsys.readouterr().out
    assert stopped.value.code == 0
    statuses = out[out.index("exit status:") :]
    assert re.search(r"^  0 ", statuses, re.M) and re.search(r"^  1 ", statuses, re.M)
    assert re.search(r"^  2 ", statuses, re.M)
    if command != "demo":
        assert re.search(r"^  3 ", statuses, re.M)


# -- 3, 7: an unreachable server ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("dsn", "reason"),
    [
        (UNREACHABLE_TCP, 'connection to server at "127.0.0.1", port 1 failed: Connection refused)'),
        (UNREACHABLE_SOCKET, 'socket "/nonexistent-forkhooks/.s.PGSQL.5432" failed: No such file or directory)'),
    ],
    ids=["refused", "no-socket"],
)
def test_check_says_why_a_servers_limits_are_unknown_and_exits_3(dsn: str, reason: str) -> None:
    """Server unreachable: the line says `cannot connect: ...` with the error's whole first line; exit 3."""
    done = forkhooks_cli(dsn, "check", "--workers", "2", "--settings", CHECKS)
    assert done.returncode == 3, done.stdout + done.stderr
    line = done.stdout.strip()
    assert len(line.splitlines()) == 1, done.stdout
    assert "= 2 connections; server limit unknown (cannot connect: OperationalError: " in line
    assert line.endswith(reason), line


def test_connections_exits_3_when_it_cannot_connect() -> None:
    """`forkhooks connections --dsn <unreachable>`: one line saying why, exit 3."""
    done = forkhooks_cli(UNREACHABLE_SOCKET, "connections", "--dsn", UNREACHABLE_SOCKET)
    assert done.returncode == 3, done.stdout + done.stderr
    assert done.stderr.strip().endswith("No such file or directory"), done.stderr
    assert done.stderr.startswith("forkhooks connections: cannot connect: OperationalError: ")
    assert len(done.stderr.strip().splitlines()) == 1


def test_error_lines_are_never_cut_mid_word() -> None:
    """The whole first line of an error; a line too long for one is cut after a word, with an ellipsis."""
    exc = OSError("connection failed: No such file or directory\n\tIs the server running locally?")
    assert error_text(exc) == "OSError: connection failed: No such file or directory"
    long = " ".join(["directory"] * 60)
    cut = first_line(long, limit=100)
    assert cut.endswith("directory…") and len(cut) <= 101
    assert first_line("\n  only line  \n") == "only line"


# -- 4: a misspelt pool option --------------------------------------------------------------------------


def test_a_misspelt_pool_option_is_an_error_in_both_checks(dsn: str) -> None:
    """OPTIONS['pool'] = {..., 'min_sise': 2}: `manage.py check` fails with E001; `forkhooks check` exits 4."""
    bad = {"FORKHOOKS_EXAMPLE_APPS": "forkhooks.django", "FORKHOOKS_EXAMPLE_POOL_OPTIONS": '{"min_sise": 2}'}
    checked = django_admin(dsn, SITE, "check", **bad)
    budget = forkhooks_cli(dsn, "check", "--workers", "2", "--settings", SITE, **bad)
    problem = (
        "DATABASES['default']['OPTIONS']['pool'] is invalid: TypeError: "
        "ConnectionPool.__init__() got an unexpected keyword argument 'min_sise'"
    )
    assert checked.returncode == 1, checked.stdout + checked.stderr
    assert f"(forkhooks.E001) {problem}" in checked.stderr
    assert budget.returncode == 4, budget.stdout + budget.stderr
    assert f"forkhooks.E001 {problem}" in budget.stdout  # Python >= 3.13 adds: Did you mean 'min_size'?
    assert "\n  a gunicorn or uWSGI master with forkhooks refuses to start with it" in budget.stdout
    # Control: the same settings with a correct option pass both.
    good = {**bad, "FORKHOOKS_EXAMPLE_POOL_OPTIONS": '{"min_size": 2}'}
    assert django_admin(dsn, SITE, "check", **good).returncode == 0
    fits = forkhooks_cli(dsn, "check", "--workers", "2", "--settings", SITE, **good)
    assert fits.returncode == 0 and "E001" not in fits.stdout and ": fits" in fits.stdout, fits.stdout + fits.stderr


# -- 5: settings from the project's own directory, and no server at all -----------------------------------


def test_settings_import_from_the_current_directory(dsn: str, tmp_path: Path) -> None:
    """`forkhooks check/connections --settings mysite.settings` run from the project's directory find it."""
    (tmp_path / "mysite").mkdir()
    (tmp_path / "mysite" / "__init__.py").write_text("")
    (tmp_path / "mysite" / "settings.py").write_text(
        "from forkhooks.demo.site.database import django_database\n"
        "SECRET_KEY = 'test-only'\n"
        "INSTALLED_APPS = ['forkhooks.django']\n"
        f"DATABASES = {{'default': django_database({dsn!r})}}\n"
    )
    # The server comes from the settings alone: `connections` would take FORKHOOKS_DSN first.
    env = {k: v for k, v in child_env(dsn).items() if k not in ("FORKHOOKS_DSN", "DJANGO_SETTINGS_MODULE")}
    runs = {
        command: subprocess.run(
            [SCRIPT, command, *extra, "--settings", "mysite.settings"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        for command, extra in (("check", ["--workers", "2"]), ("connections", []))
    }
    for done in runs.values():
        assert "No module named" not in done.stdout + done.stderr
    assert runs["check"].returncode == 0, runs["check"].stdout + runs["check"].stderr
    assert "2 workers x 1 (threads, 'default' without pool) = 2 connections" in runs["check"].stdout
    # 0 or 1: other tests' backends may be flagged; 2 or 3 would mean the settings or the server failed.
    assert runs["connections"].returncode in (0, 1), runs["connections"].stdout + runs["connections"].stderr


def test_connections_without_any_server_says_what_to_pass() -> None:
    """No --dsn, FORKHOOKS_DSN, --settings nor DJANGO_SETTINGS_MODULE: one line naming both options, exit 2."""
    env = {k: v for k, v in child_env("").items() if k not in ("FORKHOOKS_DSN", "DJANGO_SETTINGS_MODULE")}
    done = subprocess.run(
        [PYTHON, "-m", "forkhooks", "connections"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.strip() == (
        "forkhooks connections: no server given: "
        "pass --dsn (or set FORKHOOKS_DSN) or --settings (or set DJANGO_SETTINGS_MODULE)"
    )


# -- 6: bad settings values, once, through the server's logger ------------------------------------------------


class Lines:
    """A logger that keeps what it is told, formatted."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def info(self, msg: str, *args: Any) -> None:
        self.lines.append("INFO " + msg % args)

    def warning(self, msg: str, *args: Any) -> None:
        self.lines.append("WARNING " + msg % args)

    def exception(self, msg: str, *args: Any) -> None:
        self.lines.append("ERROR " + msg % args)

    def warnings(self) -> list[str]:
        return [line for line in self.lines if line.startswith("WARNING")]


@pytest.fixture
def fresh_record(monkeypatch: pytest.MonkeyPatch) -> None:
    """This test process has reported no bad setting yet."""
    monkeypatch.setattr(_settings, "_reported", set())
    for name in ("FORKHOOKS_WARM", "FORKHOOKS_WARM_TIMEOUT", "FORKHOOKS_CLOSE_TIMEOUT"):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.parametrize(
    ("name", "value", "line"),
    [
        ("FORKHOOKS_WARM", "maybe", "is not one of 1/0/true/false/yes/no/on/off; using the default, on"),
        ("FORKHOOKS_GC_FREEZE", "sometimes", "is not one of 1/0/true/false/yes/no/on/off; using the default, off"),
        ("FORKHOOKS_CLOSE_TIMEOUT", "-3", "is not a positive number of seconds; using the default, 5 seconds"),
        ("FORKHOOKS_WARM_TIMEOUT", "inf", "is not a positive number of seconds; using the default, 10 seconds"),
    ],
)
def test_a_bad_setting_is_one_line_in_words_through_the_given_log(
    name: str, value: str, line: str, fresh_record: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Read three times in a process: one warning, through the log the hook was given, the default in words."""
    monkeypatch.setenv(name, value)
    log = Lines()
    for _ in range(3):
        _settings.report_bad_values(log)
    assert log.warnings() == [f"WARNING forkhooks: {name}={value!r} {line}"]


def test_a_child_does_not_repeat_what_its_parent_reported(fresh_record: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """The record of reported values is inherited at fork: a forked child stays silent on the same value."""
    monkeypatch.setenv("FORKHOOKS_WARM", "maybe")
    parent = Lines()
    assert _settings.warm_enabled(parent) is True
    pid = os.fork()
    if pid == 0:  # the child: exit 0 only if it stayed silent and kept the default
        child = Lines()
        os._exit(0 if _settings.warm_enabled(child) is True and not child.lines else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert len(parent.warnings()) == 1


@pytest.mark.parametrize("value", ["abc", -1, 0, float("nan"), True])
def test_a_bad_hook_timeout_keeps_the_default(value: object, fresh_record: None) -> None:
    """close(timeout=<bad>) twice: one warning naming the value, the default used, the close done both times."""
    log = Lines()
    for _ in range(2):
        report = _core.close(log=log, who="test", timeout=value)  # type: ignore[arg-type]
        assert report.failures == 0
    assert log.warnings() == [
        f"WARNING forkhooks: a hook's timeout={value!r} is not a positive number of seconds; "
        "using the default, 5 seconds"
    ]
    assert _settings.timeout(value, _settings.warm_timeout, log) == 10.0
    assert _settings.timeout("2.5", _settings.warm_timeout, log) == 2.5


GUNICORN_LINE = re.compile(r"^\[[^]]+\] \[(\d+)\] \[WARNING\] forkhooks: (.*)$")


@pytest.mark.e2e
def test_bad_settings_are_one_gunicorn_line_each_with_4_workers(
    dsn: str, db: psycopg.Connection, tmp_path: Path
) -> None:
    """FORKHOOKS_CLOSE_TIMEOUT=-3, FORKHOOKS_WARM=maybe: each once, from the master, in gunicorn's format; serves."""
    server = serve(
        dsn,
        tmp_path,
        ["-c", "python:forkhooks.gunicorn"],
        WSGI,
        env={"FORKHOOKS_CLOSE_TIMEOUT": "-3", "FORKHOOKS_WARM": "maybe"},
    )
    try:
        results = loadgen.run(server.target, 200, concurrency=8)
    finally:
        code = server.stop()
    log = server.log()
    assert code == 0, log[-3000:]
    assert (results.failed, results.wrong) == (0, 0), results.summary()
    for name, value, words in (
        ("FORKHOOKS_CLOSE_TIMEOUT", "-3", "is not a positive number of seconds; using the default, 5 seconds"),
        ("FORKHOOKS_WARM", "maybe", "is not one of 1/0/true/false/yes/no/on/off; using the default, on"),
    ):
        lines = [line for line in log.splitlines() if f"{name}=" in line]
        assert len(lines) == 1, "\n".join(lines)
        match = GUNICORN_LINE.match(lines[0])
        assert match, lines[0]
        assert int(match.group(1)) == server.pid  # the master's, once: the workers inherit that it was said
        assert match.group(2) == f"{name}={value!r} {words}"
    assert len(forkhooks_lines(log, "worker", r"opened 'default' \(2 connections\)")) == 4  # the default: on
    assert len(forkhooks_lines(log, "worker", "closed 0 connections and 1 pool")) == 4


# -- 9: W002 under -k forkhooks.workers.* -------------------------------------------------------------------------

CHECKS_CONF = """
def post_worker_init(worker):
    from django.core import checks
    ids = sorted({message.id for message in checks.run_checks()})
    worker.log.info("test checks: %s", ",".join(ids) or "none")
"""


def test_w002_knows_the_worker_classes(dsn: str) -> None:
    """A process that loaded forkhooks.workers runs the hooks: no W002 (the in-process form of the test below)."""
    quiet = django_check(dsn, before="import gunicorn.arbiter, forkhooks.workers", CASE_POOL_MAX="4")
    assert "forkhooks.W002" not in quiet.stderr + quiet.stdout


@pytest.mark.e2e
def test_w002_not_reported_in_a_forkhooks_worker_class(dsn: str, db: psycopg.Connection, tmp_path: Path) -> None:
    """Checks run in each gunicorn worker: none under -k forkhooks.workers.SyncWorker; W002 under -k sync (control)."""
    conf = tmp_path / "checks_conf.py"
    conf.write_text(CHECKS_CONF)
    assert checks_in_workers(dsn, tmp_path / "k", conf, "forkhooks.workers.SyncWorker") == ["none"] * 4
    assert checks_in_workers(dsn, tmp_path / "control", conf, "sync") == ["forkhooks.W002"] * 4


def checks_in_workers(dsn: str, run_dir: Path, conf: Path, worker_class: str) -> list[str]:
    """The check ids each of 4 preloaded workers of `worker_class` found after loading the app."""
    run_dir.mkdir()
    server = serve(
        dsn,
        run_dir,
        ["-c", str(conf), "-k", worker_class],
        WSGI,
        env={"FORKHOOKS_EXAMPLE_APPS": "forkhooks.django", "FORKHOOKS_WARM": "0"},
    )
    try:
        poll(lambda: server.log().count("test checks: ") >= 4, timeout=15, what="4 workers ran the checks")
    finally:
        if worker_class.startswith("forkhooks."):
            assert server.stop() == 0, server.log()[-3000:]
        else:  # without forkhooks the workers share the master's pool: no clean stop to ask for
            server.kill()
    return re.findall(r"test checks: (\S+)", server.log())


@pytest.mark.e2e
def test_bad_settings_are_one_uwsgi_line_each_with_4_workers(dsn: str, db: psycopg.Connection, tmp_path: Path) -> None:
    """The same under uWSGI (forkhooks.uwsgi): each bad value once, through uWSGI's log, at WARNING; serves, stops."""
    from .uwsgiservers import fifo, ini, wait_exit
    from .uwsgiservers import serve as serve_uwsgi

    env = {"FORKHOOKS_CLOSE_TIMEOUT": "-3", "FORKHOOKS_WARM": "maybe"}
    server = serve_uwsgi(dsn, tmp_path, ini(tmp_path), env=env)
    try:
        results = loadgen.run(server.target, 100, concurrency=8)
    finally:
        fifo(server, b"q")
        code = wait_exit(server, db)
    log = server.log()
    assert code == 0, log[-3000:]
    assert (results.failed, results.wrong) == (0, 0), results.summary()
    for name, value in env.items():
        lines = [line for line in log.splitlines() if f"{name}=" in line]
        assert len(lines) == 1, "\n".join(lines)
        assert lines[0].startswith(f"WARNING forkhooks: {name}={value!r} is not "), lines[0]
    assert len(forkhooks_lines(log, "worker", r"opened 'default' \(2 connections\)")) == 4  # the default: on
