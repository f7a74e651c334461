"""The tree shows the architecture: the core imports nothing of forkhooks outside itself."""

from __future__ import annotations

import ast
import subprocess
from pathlib import Path

import pytest

from .harness import PYTHON, ROOT

PACKAGE = ROOT / "forkhooks"


def forkhooks_imports(path: Path) -> set[str]:
    """The forkhooks modules a file imports, as absolute dotted names."""
    module = ".".join(path.relative_to(ROOT).with_suffix("").parts)
    package = module.rsplit(".", 1)[0] if path.name != "__init__.py" else module.removesuffix(".__init__")
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = package.split(".")[: len(package.split(".")) - node.level + 1] if node.level else []
            target = ".".join([*base, node.module] if node.module else base)
            if target.startswith("forkhooks"):
                found.add(target)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("forkhooks"))
    return found


def test_the_core_imports_nothing_from_adapters_tools_or_demo() -> None:
    """forkhooks/_core/* imports only forkhooks._core."""
    for path in (PACKAGE / "_core").glob("*.py"):
        outside = {m for m in forkhooks_imports(path) if not m.startswith("forkhooks._core")}
        assert outside == set(), f"{path.name} imports {outside}"


def test_tools_and_adapters_never_import_the_demo() -> None:
    """The demo builds on the rest; nothing but the CLI's `demo` command reaches into it."""
    for folder in ("_core", "_adapters", "_tools", "django"):
        for path in (PACKAGE / folder).glob("*.py"):
            assert not {m for m in forkhooks_imports(path) if m.startswith("forkhooks.demo")}, path


@pytest.mark.parametrize(
    "module",
    [
        "forkhooks",
        "forkhooks.gunicorn",
        "forkhooks.workers",
        "forkhooks.celery",
        "forkhooks.rq",
        "forkhooks._tools.cli",
    ],
)
def test_public_modules_import_alone_in_a_fresh_interpreter(module: str) -> None:
    """Each public module imports first in a new process: no import cycle hides behind another's import."""
    done = subprocess.run([PYTHON, "-c", f"import {module}"], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert done.returncode == 0, done.stderr
