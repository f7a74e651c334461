"""The core on MySQL drivers, in process and without a server: sockets made inert, a running query seen."""

from __future__ import annotations

import os
import socket
import threading
from typing import Any

import pymysql
import pytest

from forkhooks._core import mysql, steps
from forkhooks._core.sockets import Inerter, graveyard, socket_fd

pytestmark = pytest.mark.unit


def deferred_pymysql(sock: socket.socket) -> Any:
    """A PyMySQL connection object on `sock`, as if connected (PyMySQL reads and writes through _sock)."""
    conn = pymysql.connections.Connection(defer_connect=True)
    conn._sock = sock
    conn._rfile = sock.makefile("rb")
    conn._current_timeout = conn._read_timeout  # what connect() sets
    return conn


def test_pymysql_socket_is_made_inert_without_a_byte_sent() -> None:
    """PyMySQL has no fileno(): its `_sock` is found, pointed at /dev/null, and the peer reads nothing."""
    ours, peer = socket.socketpair()
    with peer:
        conn = deferred_pymysql(ours)
        fd = ours.fileno()
        assert socket_fd(conn) == fd
        with Inerter() as inert:
            inert.bury(conn)
        assert socket_fd(conn) is None  # the fd is /dev/null now, not a socket
        assert graveyard[-1] is conn  # kept alive: no finalizer runs on it here
        os.write(fd, b"COM_QUIT")  # what a later write would be: it goes nowhere
        peer.settimeout(5)
        # This process held the socket's only reference, so the peer sees it closed (in a forked
        # child the parent still holds it open): EOF, and not one byte of what was written.
        assert peer.recv(16) == b""


def test_unknown_driver_info_method_is_left_alone() -> None:
    """A driver whose `info` is a method (MySQLdb's) is no psycopg: no cancel, no exception."""

    class Driver:
        def info(self) -> str:
            return "not psycopg"

    assert steps.cancel_running_query(object(), Driver(), 1.0) is False


def test_busy_sees_a_pymysql_read_in_another_thread() -> None:
    """A thread blocked in PyMySQL reading for a connection makes it busy; an idle one is not."""
    ours, peer = socket.socketpair()
    conn = deferred_pymysql(ours)
    assert mysql.is_mysql(conn)
    assert not mysql.busy(conn)
    started = threading.Event()

    def read() -> None:
        started.set()
        try:
            conn._read_packet()
        except Exception:  # the peer closed: the read ends
            pass

    reader = threading.Thread(target=read)
    reader.start()
    started.wait(5)
    try:
        from forkhooks.demo.process import poll

        poll(lambda: mysql.busy(conn), timeout=5, what="the reader inside PyMySQL")
    finally:
        peer.close()
        reader.join(5)
    assert not mysql.busy(conn)
    ours.close()


def test_budget_plans_mysql_aliases_on_port_3306() -> None:
    """A MySQL alias is counted like PostgreSQL's without a pool (one per thread), on MySQL's default port."""
    from forkhooks._tools.budget import plan

    from .test_budget import databases

    with databases({"default": {"ENGINE": "django.db.backends.mysql", "HOST": "db", "NAME": "app"}}):
        (only,) = plan(4, threads=8)
    assert only.server == "db:3306"
    assert only.need == 32
    assert only.terms == ["4 workers x 8 (threads, 'default' without pool)"]
