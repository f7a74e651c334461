"""forkhooks' settings from the environment: a bad value is one line through the server's logger, then the default."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from forkhooks._core import settings

pytestmark = pytest.mark.unit

NAME = "FORKHOOKS_UNIT_SETTING"  # a setting no server reads: the process's real ones stay untouched


class Lines:
    """A logger (settings.Warns) that keeps the lines it is given, as the server's logger would print them."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def warning(self, msg: str, *args: Any) -> None:
        self.lines.append(msg % args)


@pytest.fixture(autouse=True)
def fresh_reports(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts with nothing reported yet (a process reports each bad value once)."""
    monkeypatch.setattr(settings, "_reported", set())


def spellings(words: set[str]) -> st.SearchStrategy[str]:
    """Each word in any case, with spaces around it, as a shell or a unit file may pass it."""

    def spell(word: str, upper: list[bool], pad: int) -> str:
        cased = "".join(c.upper() if u else c for c, u in zip(word, upper, strict=False))
        return f"{' ' * pad}{cased} "

    return st.builds(
        spell,
        st.sampled_from(sorted(words)),
        st.lists(st.booleans(), min_size=5, max_size=5),
        st.integers(0, 2),
    )


@given(spellings(settings.TRUE), st.booleans())
def test_a_true_word_is_true_whatever_the_default(raw: str, default: bool) -> None:
    """1/true/yes/on in any case turn a flag on, silently."""
    log = Lines()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(NAME, raw)
        assert settings.flag(NAME, default, log) is True
    assert log.lines == []


@given(spellings(settings.FALSE), st.booleans())
def test_a_false_word_is_false_whatever_the_default(raw: str, default: bool) -> None:
    """0/false/no/off in any case turn a flag off, silently."""
    log = Lines()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(NAME, raw)
        assert settings.flag(NAME, default, log) is False
    assert log.lines == []


@pytest.mark.parametrize("raw", ["", "   "])
def test_unset_or_blank_keeps_the_default(raw: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """An empty value is no value: the default, no line."""
    monkeypatch.setenv(NAME, raw)
    log = Lines()
    assert settings.flag(NAME, True, log) is True
    assert settings.seconds(NAME, 2.5, log) == 2.5
    assert log.lines == []


def test_a_bad_flag_is_one_line_once_then_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    """`maybe` is reported once, naming the setting, the value, the accepted words and the default."""
    monkeypatch.setenv(NAME, "Maybe")
    log = Lines()
    assert settings.flag(NAME, True, log) is True
    assert settings.flag(NAME, True, log) is True  # the same bad value again: no second line
    assert log.lines == [f"forkhooks: {NAME}='maybe' is not one of 1/0/true/false/yes/no/on/off; using the default, on"]


@given(st.floats(min_value=1e-6, max_value=1e6, allow_nan=False))
def test_positive_seconds_are_read(value: float) -> None:
    """Any positive finite number, as Python writes it, is the number of seconds."""
    log = Lines()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(NAME, repr(value))
        assert settings.seconds(NAME, 5.0, log) == value
    assert log.lines == []


@pytest.mark.parametrize("raw", ["0", "-1", "nan", "inf", "-inf", "ten", "1s", "0x10"])
def test_bad_seconds_are_one_line_then_the_default(raw: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Zero, negative, NaN, infinite or not a number: one line, and the default."""
    monkeypatch.setenv(NAME, raw)
    log = Lines()
    assert settings.seconds(NAME, 1.0, log) == 1.0
    assert log.lines == [f"forkhooks: {NAME}={raw!r} is not a positive number of seconds; using the default, 1 second"]


def test_a_timeout_keyword_wins_over_the_setting_when_valid(monkeypatch: pytest.MonkeyPatch) -> None:
    """A hook's timeout=: None means the setting; a positive number is taken; a bad one is one line."""
    monkeypatch.setenv("FORKHOOKS_CLOSE_TIMEOUT", "7")
    log = Lines()
    assert settings.timeout(None, settings.close_timeout, log) == 7.0
    assert settings.timeout(0.5, settings.close_timeout, log) == 0.5
    assert settings.timeout("3", settings.close_timeout, log) == 3.0
    assert log.lines == []
    for bad in (True, 0, -2, "soon", float("nan"), [1]):
        assert settings.timeout(bad, settings.close_timeout, log) == 7.0
    assert len(log.lines) == 6
    assert log.lines[0] == (
        "forkhooks: a hook's timeout=True is not a positive number of seconds; using the default, 7 seconds"
    )


def test_every_setting_has_its_documented_default(monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing set: warm on, 10 s, close 5 s, names on, budget on, gc.freeze off."""
    for name in ("WARM", "WARM_TIMEOUT", "CLOSE_TIMEOUT", "APPLICATION_NAME", "BUDGET", "GC_FREEZE"):
        monkeypatch.delenv(f"FORKHOOKS_{name}", raising=False)
    assert settings.warm_enabled() is True
    assert settings.warm_timeout() == 10.0
    assert settings.close_timeout() == 5.0
    assert settings.application_name_enabled() is True
    assert settings.budget_enabled() is True
    assert settings.gc_freeze_enabled() is False


def test_a_master_reports_every_bad_value_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """report_bad_values() reads all six settings: one line per bad one, none again later (nor in children)."""
    monkeypatch.setenv("FORKHOOKS_WARM", "sometimes")
    monkeypatch.setenv("FORKHOOKS_WARM_TIMEOUT", "-3")
    monkeypatch.setenv("FORKHOOKS_GC_FREEZE", "on")
    log = Lines()
    settings.report_bad_values(log)
    named = [line.split("=")[0].removeprefix("forkhooks: ") for line in log.lines]
    assert named == ["FORKHOOKS_WARM", "FORKHOOKS_WARM_TIMEOUT"]
    settings.report_bad_values(log)
    assert settings.warm_enabled(log) is True and settings.warm_timeout(log) == 10.0
    assert len(log.lines) == 2
