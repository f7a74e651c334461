"""What the operator commands share: one-line errors and settings on sys.path."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from forkhooks._tools.common import MAX_LINE, error_text, first_line, use_settings

pytestmark = pytest.mark.unit


@given(st.text(max_size=1000), st.integers(min_value=10, max_value=400))
def test_first_line_is_one_line_within_the_limit(text: str, limit: int) -> None:
    """One line, no longer than `limit` plus the ellipsis, and the start of the first non-blank line."""
    line = first_line(text, limit)
    whole = next((part.strip() for part in text.splitlines() if part.strip()), "")
    assert len(line.splitlines()) <= 1
    if len(whole) <= limit:
        assert line == whole
    else:
        assert line.endswith("…") and len(line) <= limit + 1
        assert whole.startswith(line.removesuffix("…"))


def test_first_line_cuts_after_a_word() -> None:
    """A long message is cut at a word boundary, trailing punctuation dropped."""
    text = "connection refused, " * 30
    assert first_line(text, 45) == "connection refused, connection refused…"
    assert first_line("\n\n  second  \nthird") == "second"
    assert len(first_line("x" * 1000)) == MAX_LINE + 1


@pytest.mark.parametrize(
    ("limit", "expected"),
    [(9, "abcd efgh…"), (10, "abcd efgh…"), (8, "abcd…"), (5, "abcd…"), (4, "abcd…"), (3, "abc…")],
)
def test_first_line_keeps_a_word_the_limit_ends_on(limit: int, expected: str) -> None:
    """A word that ends exactly at the limit is whole, so it stays; one the limit cuts in two goes."""
    assert first_line("abcd efgh ijkl", limit) == expected


@pytest.mark.parametrize(
    ("exc", "text"),
    [
        (ValueError("bad value\nTraceback details"), "ValueError: bad value"),
        (RuntimeError(), "RuntimeError"),
        (OSError("   \n"), "OSError"),
    ],
)
def test_error_text_is_type_and_first_line(exc: BaseException, text: str) -> None:
    """`Type: first line`, or the bare type for an empty message."""
    assert error_text(exc) == text


def test_use_settings_needs_a_module(monkeypatch: pytest.MonkeyPatch) -> None:
    """Neither --settings nor DJANGO_SETTINGS_MODULE: False, and nothing changes."""
    # Set, then deleted: monkeypatch restores (removes) what use_settings() sets, so no later test sees it.
    monkeypatch.setenv("DJANGO_SETTINGS_MODULE", "unset")
    monkeypatch.delenv("DJANGO_SETTINGS_MODULE")
    monkeypatch.setattr(sys, "path", list(sys.path))
    before = list(sys.path)
    assert not use_settings(None)
    assert sys.path == before and "DJANGO_SETTINGS_MODULE" not in os.environ


def test_use_settings_puts_the_current_directory_on_sys_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """--settings sets DJANGO_SETTINGS_MODULE and the project's directory is importable, once."""
    # Set, then deleted: monkeypatch restores (removes) what use_settings() sets, so no later test sees it.
    monkeypatch.setenv("DJANGO_SETTINGS_MODULE", "unset")
    monkeypatch.delenv("DJANGO_SETTINGS_MODULE")
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", ".")])
    monkeypatch.chdir(tmp_path)
    assert use_settings("shop.settings")
    assert os.environ["DJANGO_SETTINGS_MODULE"] == "shop.settings"
    assert sys.path[0] == str(tmp_path)
    assert use_settings(None)  # from the environment now; the directory is not added twice
    assert sys.path.count(str(tmp_path)) == 1
