"""uWSGI's options as forkhooks reads them (flags, repeated values, the graceful harakiri signal)."""

from __future__ import annotations

import signal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from forkhooks._adapters.uwsgi_options import STOP_SIGNALS, UWSGI_SIGNALS, flag, harakiri_signal, values

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("opt", "on"),
    [
        ({}, False),
        ({"master": True}, True),  # --master on the command line
        ({"master": b"true"}, True),  # master = true in an ini file
        ({"master": b"1"}, True),
        ({"master": b"false"}, False),
        ({"master": "off"}, False),
        ({"master": [b"true", b"0"]}, False),  # given twice: the last one wins
        ({"master": [b"no", True]}, True),
    ],
)
def test_flags_from_command_line_and_ini(opt: dict[str, Any], on: bool) -> None:
    """A flag is on unless absent or a false word, whatever form uWSGI hands it in."""
    assert flag(opt, "master") is on


def test_values_decode_and_drop_bare_flags() -> None:
    """Every value as text: bytes decoded, a list kept in order, a bare flag (True) left out."""
    assert values({}, "mount") == []
    assert values({"mount": True}, "mount") == []
    assert values({"module": b"shop.wsgi:application"}, "module") == ["shop.wsgi:application"]
    assert values({"mount": [b"/a=a.py", True, "/b=b:app"]}, "mount") == ["/a=a.py", "/b=b:app"]


def graceful(signum: object) -> dict[str, Any]:
    """uwsgi.opt with harakiri-graceful-timeout and this harakiri-graceful-signal, as an ini file gives them."""
    return {"harakiri": b"30", "harakiri-graceful-timeout": b"5", "harakiri-graceful-signal": str(signum).encode()}


@given(st.integers(min_value=-5, max_value=200))
def test_only_a_signal_uwsgi_leaves_alone_is_taken(signum: int) -> None:
    """A real signal uWSGI does not use in a worker is handled; its stop signals, SIGALRM, SIGKILL... never."""
    expected = signum if 0 < signum < signal.NSIG and signum not in UWSGI_SIGNALS else None
    assert harakiri_signal(graceful(signum)) == expected


def test_the_usual_choices() -> None:
    """SIGSYS and SIGWINCH work; SIGTERM (uWSGI's default) and SIGUSR1 are uWSGI's own."""
    assert harakiri_signal(graceful(int(signal.SIGSYS))) == signal.SIGSYS
    assert harakiri_signal(graceful(int(signal.SIGWINCH))) == signal.SIGWINCH
    assert harakiri_signal(graceful(int(signal.SIGTERM))) is None
    assert harakiri_signal(graceful(int(signal.SIGUSR1))) is None
    assert signal.SIGTERM in STOP_SIGNALS


@pytest.mark.parametrize(
    "opt",
    [
        {},  # no harakiri at all
        {"harakiri": b"30", "harakiri-graceful-signal": b"31"},  # a signal but no graceful timeout: plain SIGKILL
        {"harakiri-graceful-timeout": b"5"},  # no signal: uWSGI's default SIGTERM, its own
        {"harakiri-graceful-timeout": b"5", "harakiri-graceful-signal": b"SIGSYS"},  # uWSGI wants a number
        {"harakiri-graceful-timeout": True, "harakiri-graceful-signal": b"31"},  # a bare flag is no timeout
    ],
)
def test_no_graceful_harakiri_no_handler(opt: dict[str, Any]) -> None:
    """Without a usable graceful timeout and signal number, forkhooks installs nothing."""
    assert harakiri_signal(opt) is None


@given(st.text(max_size=12) | st.binary(max_size=12).filter(lambda b: b.isascii()))
def test_any_signal_text_is_a_signal_or_none(raw: str | bytes) -> None:
    """Whatever an ini file says, the answer is a signal forkhooks may handle, or None; never an exception."""
    opt = {"harakiri-graceful-timeout": b"5", "harakiri-graceful-signal": raw}
    found = harakiri_signal(opt)
    assert found is None or (0 < found < signal.NSIG and found not in UWSGI_SIGNALS)
