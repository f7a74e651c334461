"""Application names: `<prefix>:<role>:<pid>@<host>` built, parsed back, always within PostgreSQL's 63 bytes."""

from __future__ import annotations

import base64
import os

import pytest
from hypothesis import given
from hypothesis import strategies as st

from forkhooks._tools import appname
from forkhooks._tools.appname import MAX_LENGTH, Owner, compose, parse

pytestmark = pytest.mark.unit

# Roles are forkhooks' own words ("worker", "celery worker", "dirty worker"): letters, digits, spaces, dashes.
roles = st.text(st.sampled_from("abcdefghijklmnopqrstuvwxyz0123456789 -"), min_size=1, max_size=24).filter(
    lambda r: r.strip() == r and r.strip()
)
pids = st.integers(min_value=0, max_value=4_194_304)  # Linux's largest pid_max
hosts = st.text(st.sampled_from("abcdefghijklmnopqrstuvwxyz234567"), min_size=appname.HOST_LENGTH, max_size=8)
prefixes = st.none() | st.text(max_size=80)


@given(prefixes, roles, pids, hosts)
def test_compose_then_parse_gives_the_owner_back(prefix: str | None, role: str, pid: int, host: str) -> None:
    """parse(compose(...)) is the owner composed, the prefix cut only as far as 63 bytes need."""
    name = compose(prefix, role, pid, host)
    owner = parse(name)
    assert owner is not None
    assert (owner.role, owner.pid, owner.host) == (role.replace(" ", "-"), pid, host)
    given_prefix = prefix or appname.DEFAULT_PREFIX
    assert given_prefix.startswith(owner.prefix)
    if len(given_prefix.encode()) + len(appname.suffix(role, pid, host).encode()) <= MAX_LENGTH:
        assert owner.prefix == given_prefix  # it fitted: nothing was cut


@given(prefixes, roles, pids, hosts)
def test_a_name_always_fits_in_63_bytes(prefix: str | None, role: str, pid: int, host: str) -> None:
    """PostgreSQL keeps 63 bytes of application_name: the prefix gives way, never the role, pid or host."""
    name = compose(prefix, role, pid, host)
    assert len(name.encode()) <= MAX_LENGTH
    assert name.endswith(appname.suffix(role, pid, host))


def test_a_long_prefix_is_cut_and_a_multibyte_character_never_split() -> None:
    """A prefix of 100 'é' (2 bytes each) keeps whole characters up to the 63rd byte."""
    name = compose("é" * 100, "worker", 4711, "abcdefgh")
    tail = ":worker:4711@abcdefgh"
    assert name.endswith(tail)
    head = name.removesuffix(tail)
    assert set(head) == {"é"}
    assert len(head.encode()) == (MAX_LENGTH - len(tail)) // 2 * 2
    assert len(name.encode()) <= MAX_LENGTH


def test_no_prefix_means_forkhooks_and_spaces_in_roles_become_dashes() -> None:
    """compose(None, 'celery worker', ...) reads 'forkhooks:celery-worker:<pid>@<host>'."""
    assert compose(None, "celery worker", 12, "abcdefgh") == "forkhooks:celery-worker:12@abcdefgh"
    assert compose("", "master", 1, "abcdefgh") == "forkhooks:master:1@abcdefgh"


@pytest.mark.parametrize(
    ("name", "owner"),
    [
        ("forkhooks:worker:123@abcdefgh", Owner("forkhooks", "worker", 123, "abcdefgh")),
        ("my:app:worker:7@zz234567", Owner("my:app", "worker", 7, "zz234567")),  # a prefix with colons
        ("user@example:worker:7@abcdefgh", Owner("user@example", "worker", 7, "abcdefgh")),
        ("forkhooks:worker:123", Owner("forkhooks", "worker", 123, None)),  # an older forkhooks: no host
        (":worker:5@abcdefgh", Owner("", "worker", 5, "abcdefgh")),
    ],
)
def test_parse_reads_forkhooks_names(name: str, owner: Owner) -> None:
    """Names forkhooks made, now or before the host token, are read back."""
    assert parse(name) == owner


@pytest.mark.parametrize(
    "name", ["", "psql", "forkhooks", "forkhooks:worker", "forkhooks:worker:12x", "forkhooks::12@abcdefgh", "a:b:@c"]
)
def test_parse_returns_none_for_other_names(name: str) -> None:
    """Any other client's name (psql, pgAdmin, a user's) is never taken for a forkhooks process."""
    assert parse(name) is None


@given(st.text(max_size=100))
def test_parse_never_raises(name: str) -> None:
    """Whatever application_name the server reports, parse() answers an Owner or None."""
    owner = parse(name)
    assert owner is None or (owner.pid >= 0 and owner.role and ":" not in owner.role)


def test_the_host_token_is_short_base32_and_stable() -> None:
    """8 lowercase base32 characters (40 bits), the same at every call in this process."""
    token = appname.host_token()
    assert len(token) == appname.HOST_LENGTH
    base64.b32decode(token.upper())  # raises unless it is base32 (8 characters: no padding)
    assert token == appname.host_token()


def test_only_names_made_on_this_host_are_ours() -> None:
    """A name with this host's token is ours; another host's, or one without a host, never is."""
    here = parse(compose("app", "worker", 4711))
    assert here is not None and here.host == appname.host_token()
    assert appname.ours(here)
    other = "aaaaaaaa" if appname.host_token() != "aaaaaaaa" else "bbbbbbbb"
    assert not appname.ours(parse(compose("app", "worker", 4711, other)))
    assert not appname.ours(parse("app:worker:4711"))
    assert not appname.ours(None)


def test_this_process_keeps_the_prefix_of_a_name_of_ours() -> None:
    """A child relabelled from its parent's name keeps the user's prefix, not the parent's role and pid."""
    parent = compose("shop", "master", 1, "abcdefgh")
    child = appname.for_this_process("worker", parent)
    assert child == compose("shop", "worker", os.getpid())
    assert appname.for_this_process("worker", "plain-name") == compose("plain-name", "worker", os.getpid())


def test_alive_tells_a_live_pid_from_a_gone_one() -> None:
    """This process is alive; a pid past the kernel's pid_max never is."""
    assert appname.alive(os.getpid())
    assert not appname.alive(4_194_304 + 1)
