"""The MySQL registry and the proof a supervisor asks of a session, in process and without a server."""

from __future__ import annotations

import json
import os
import socket
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pymysql
import pytest

from forkhooks._core import mysql, procs
from forkhooks._core.mysql import START_TOLERANCE, Session, unproven

pytestmark = pytest.mark.unit

NOW = 1_800_000_000.0
STARTED = NOW - 3600  # the server started an hour ago


def entry(**changes: Any) -> mysql.Entry:
    """A TCP session recorded a minute ago by root, from 10.0.0.5:40000 to port 3306."""
    base: dict[str, Any] = {
        "thread_id": 42,
        "host": "db",
        "port": 3306,
        "unix_socket": "",
        "user": "root",
        "database": "app",
        "connected_at": NOW - 60,
        "client": ("10.0.0.5", 40000),
        "peer_port": 3306,
    }
    base.update(changes)
    return mysql.Entry(**base)


def test_a_session_is_proven_by_id_user_client_port_and_server_run() -> None:
    """The same user and client host:port on the same server run: proven ('')."""
    assert unproven(entry(), Session("root", "10.0.0.5:40000", "Query"), STARTED, set()) == ""
    # The server shows a host name (name resolution on): the port still decides.
    assert unproven(entry(), Session("root", "app-1.internal:40000", "Query"), STARTED, set()) == ""
    # A Unix socket: the server shows 'localhost', no port.
    assert unproven(entry(client=None, peer_port=None), Session("root", "localhost", "Sleep"), STARTED, set()) == ""


@pytest.mark.parametrize(
    ("recorded", "session", "why"),
    [
        (entry(), None, "is gone"),
        (
            entry(connected_at=STARTED - 10),
            Session("root", "10.0.0.5:40000", "Query"),
            "before the server's last start",
        ),
        (entry(connected_at=STARTED + START_TOLERANCE / 2), Session("root", "10.0.0.5:40000", "Query"), "before"),
        (entry(), Session("app", "10.0.0.5:40000", "Query"), "now belongs to user 'app'"),
        (entry(), Session("root", "10.0.0.5:40001", "Query"), "not port 40000"),
        (entry(), Session("root", "10.0.0.6:40000", "Query"), "not 10.0.0.5"),
        (entry(), Session("root", "localhost", "Query"), "not port 40000"),
        (entry(client=None, peer_port=None), Session("root", "10.0.0.5:40000", "Query"), "now has a TCP client"),
    ],
)
def test_a_session_that_differs_in_anything_is_not_proven(
    recorded: mysql.Entry, session: Session | None, why: str
) -> None:
    """Gone, recorded before the server (re)started, another user, another client port or address, another
    transport: each says why, and is left alone."""
    assert why in unproven(recorded, session, STARTED, set())


def test_a_client_end_a_live_process_holds_is_not_proven() -> None:
    """The dead child's TCP client end is still held by some process here (it inherited it): left alone."""
    held = {("10.0.0.5", 40000, 3306)}
    assert "held by a live process" in unproven(entry(), Session("root", "10.0.0.5:40000", "Query"), STARTED, held)
    mapped = entry(client=("::ffff:10.0.0.5", 40000))  # an IPv4-mapped address compares as IPv4
    assert "held by a live process" in unproven(mapped, Session("root", "10.0.0.5:40000", "Query"), STARTED, held)


def test_parse_registry_keeps_good_entries_and_refuses_another_pids_file() -> None:
    """A file names its pid: another pid's is None; an entry that is not one is skipped, the others kept."""
    good = {
        "thread_id": 7,
        "host": "",
        "port": 0,
        "unix_socket": "/run/mysqld.sock",
        "user": "app",
        "database": "app",
        "connected_at": NOW,
        "client": None,
        "peer_port": None,
    }
    record = {"pid": 10, "started": 123, "connections": [good, {"thread_id": "x"}, "junk", {**good, "thread_id": 8}]}
    parsed = mysql.parse_registry(record, 10)
    assert parsed is not None
    assert [e.thread_id for e in parsed.entries] == [7, 8]
    assert parsed.started == 123
    assert parsed.entries[0].server == ("", 0, "/run/mysqld.sock")
    assert mysql.parse_registry(record, 11) is None
    for junk in (None, [], {"pid": 10}, {"pid": 10, "connections": "x"}):
        assert mysql.parse_registry(junk, 10) is None


def test_server_of_normalizes_connect_arguments() -> None:
    """Django's connect arguments, however spelled, give one (host, port, socket) key."""
    assert mysql.server_of({"host": "db", "port": 3306}) == ("db", 3306, "")
    assert mysql.server_of({"unix_socket": "/s", "host": None}) == ("", 0, "/s")
    assert mysql.server_of({}) == ("", 0, "")


@pytest.fixture
def private_tmp(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """tempfile.gettempdir() is a fresh directory: the registry lives there; this process's entries are forgotten."""
    with tempfile.TemporaryDirectory() as tmp:
        monkeypatch.setattr(tempfile, "tempdir", tmp)
        monkeypatch.setattr(mysql, "_entries", type(mysql._entries)())
        monkeypatch.setattr(mysql, "_pruned_in", [])
        yield Path(tmp)


def no_such_pid() -> int:
    """A pid no process can have (above the kernel's pid_max)."""
    return int(Path("/proc/sys/kernel/pid_max").read_text()) + 1


def fake_connection(thread_id: int) -> tuple[Any, socket.socket]:
    """A PyMySQL connection object on a Unix socketpair, as if connected with that server thread id."""
    ours, peer = socket.socketpair()
    conn = pymysql.connections.Connection(defer_connect=True)
    conn._sock = ours
    conn.server_thread_id = (thread_id,)
    return conn, peer


PARAMS = {"unix_socket": "/run/mysqld.sock", "user": "app", "database": "app", "password": "never written"}


def test_each_connect_rewrites_the_file_with_this_processs_live_sessions(private_tmp: Path) -> None:
    """remember() lists each session (no password); an inherited one (another pid's) never; a closed one drops out,
    and with the last one the file goes."""
    first, p1 = fake_connection(11)
    inherited, p2 = fake_connection(12)
    mysql.remember(first, PARAMS)
    path = mysql.registry_dir() / str(os.getpid())
    assert oct(path.parent.stat().st_mode & 0o777) == oct(0o700)
    mysql.remember(inherited, PARAMS)
    mysql._entries[inherited] = (os.getpid() - 1 or 1, mysql._entries[inherited][1])  # a parent's, as after fork
    mysql.write_registry()
    text = path.read_text()
    assert "never written" not in text
    record = json.loads(text)
    assert record["pid"] == os.getpid() and record["started"] == procs.start_time(os.getpid())
    assert [(e["thread_id"], e["unix_socket"], e["client"]) for e in record["connections"]] == [
        (11, "/run/mysqld.sock", None)
    ]
    read = mysql.read_registry(os.getpid())
    assert read is not None and [e.thread_id for e in read.entries] == [11]
    first._sock = None  # PyMySQL's `open` is False once closed
    mysql.forget_registry()
    assert not path.exists()
    for s in (p1, p2):
        s.close()


def test_a_registry_directory_someone_else_can_write_is_refused(private_tmp: Path) -> None:
    """A group- or world-writable registry directory is not trusted: nothing written, nothing read, one warning."""
    folder = mysql.registry_dir()
    folder.mkdir(parents=True, mode=0o700)
    os.chmod(folder, 0o777)
    (folder / "1").write_text(json.dumps({"pid": 1, "connections": []}))
    conn, peer = fake_connection(5)
    mysql.remember(conn, PARAMS)  # never raises
    assert not (folder / str(os.getpid())).exists()
    assert mysql.read_registry(1) is None
    peer.close()


def test_the_first_write_prunes_the_files_no_supervisor_can_want(private_tmp: Path) -> None:
    """A dead pid's file goes once its parent is gone too, or once it is older than STALE_AFTER; a dead pid's file
    whose parent lives (its supervisor may be about to read it), and a live process's old file, stay."""
    folder = mysql.registry_dir()
    folder.mkdir(parents=True, mode=0o700)
    os.chmod(folder.parent, 0o700)
    dead = no_such_pid()
    me = {"parent": os.getpid(), "parent_started": procs.start_time(os.getpid())}
    files = {
        "1": ({"parent": 0}, True),  # pid 1 lives: kept, however old
        str(dead): (me, True),  # dead, its parent (this process) lives: kept
        str(dead + 1): ({"parent": dead + 5, "parent_started": 1}, False),  # dead, parent gone: removed
        str(dead + 2): ({**me, "parent_started": 1}, False),  # dead, its parent's pid now another process's
        str(dead + 3): (me, False),  # dead, parent lives, but older than STALE_AFTER: removed
        f".{dead}.tmp": (me, False),  # a dead writer's tmp file
        f".{os.getppid()}.tmp": (me, True),  # a live writer's
    }
    old = time.time() - mysql.STALE_AFTER - 60
    for name, (record, _) in files.items():
        (folder / name).write_text(json.dumps({"pid": name, "connections": [], **record}))
        if name in ("1", str(dead + 3)):
            os.utime(folder / name, (old, old))
    conn, peer = fake_connection(5)
    mysql.remember(conn, PARAMS)
    kept = {name for name, (_, stays) in files.items() if stays} | {str(os.getpid())}
    assert {p.name for p in folder.iterdir()} == kept
    assert oct((folder / str(os.getpid())).stat().st_mode & 0o777) == oct(0o600)
    peer.close()


def test_start_time_tells_a_process_from_a_later_one_with_its_pid() -> None:
    """/proc's start time: the same for this process each time, None for a pid no process has."""
    assert procs.start_time(os.getpid()) == procs.start_time(os.getpid()) is not None
    assert procs.start_time(no_such_pid()) is None


def test_threads_connecting_at_once_leave_a_file_that_lists_every_session(private_tmp: Path) -> None:
    """gthread's request threads connect concurrently: one writer at a time, the last file lists all of them."""
    import threading

    made = [fake_connection(100 + i) for i in range(8)]
    threads = [threading.Thread(target=mysql.remember, args=(conn, PARAMS)) for conn, _ in made]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    record = json.loads((mysql.registry_dir() / str(os.getpid())).read_text())
    assert sorted(e["thread_id"] for e in record["connections"]) == list(range(100, 108))
    for _, peer in made:
        peer.close()
