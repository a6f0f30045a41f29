"""The systemd protocols without systemd: LISTEN_FDS parsing, sd_notify datagrams, JOURNAL_STREAM.

Real sockets throughout: the notifications go to a Unix datagram socket the
test binds (a path, and an abstract ``@name``); inherited descriptors are
real sockets placed at fds 3 and 4 of a child interpreter, as a service
manager would place them. (systemd-socket-activate itself drives the whole
command in tests/peers/test_peer_systemd.py.)
"""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest

from trio_timehttp import _systemd


def test_not_socket_activated() -> None:
    assert _systemd.inherited_sockets({}, os.getpid()) == []
    env = {"LISTEN_FDS": "2", "LISTEN_PID": str(os.getpid() + 1)}
    assert _systemd.inherited_sockets(env, os.getpid()) == []  # for another process
    assert env == {"LISTEN_FDS": "2", "LISTEN_PID": str(os.getpid() + 1)}  # left alone
    env = {"LISTEN_FDS": "0", "LISTEN_PID": str(os.getpid())}
    assert _systemd.inherited_sockets(env, os.getpid()) == []
    assert env == {}  # ours, consumed


@pytest.mark.parametrize(
    "env",
    [
        {"LISTEN_FDS": "two", "LISTEN_PID": "1"},
        {"LISTEN_FDS": "1", "LISTEN_PID": "me"},
    ],
)
def test_malformed_listen_variables(env: dict[str, str]) -> None:
    with pytest.raises(ValueError, match="not whole numbers"):
        _systemd.inherited_sockets(env, 1)


CHILD = textwrap.dedent(
    """
    import fcntl, json, os, socket, sys
    from trio_timehttp import _systemd

    tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    tcp.bind(("127.0.0.1", 0)); tcp.listen()
    udp = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    udp.bind(("::1", 0))
    # Where a service manager puts them: fds 3 and 4, inheritable (moved
    # out of the way first: the sockets themselves may have got 3 or 4).
    high = [fcntl.fcntl(s.fileno(), fcntl.F_DUPFD, 100) for s in (tcp, udp)]
    tcp.close(); udp.close()
    for fd, moved in zip((3, 4), high):
        os.dup2(moved, fd)
        os.close(moved)
    os.environ.update(LISTEN_FDS="2", LISTEN_PID=str(os.getpid()), LISTEN_FDNAMES=sys.argv[1])
    got = _systemd.inherited_sockets(os.environ, os.getpid())
    print(json.dumps({
        "items": [[i.fd, i.name, int(i.sock.family), int(i.sock.type), i.sock.getsockname()[0],
                   os.get_inheritable(i.fd)] for i in got],
        "env": sorted(k for k in os.environ if k.startswith("LISTEN_")),
    }))
    """
)


@pytest.mark.parametrize(
    ("names", "expected"),
    [("time-stream:time-dgram", ["time-stream", "time-dgram"]), ("one", ["unknown"] * 2)],
)
def test_inherited_sockets_are_told_apart_by_the_kernel(names: str, expected: list[str]) -> None:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, names], capture_output=True, check=True, timeout=60
    ).stdout
    result = json.loads(out)
    assert result["items"] == [
        [3, expected[0], socket.AF_INET, socket.SOCK_STREAM, "127.0.0.1", False],
        [4, expected[1], socket.AF_INET6, socket.SOCK_DGRAM, "::1", False],
    ]
    assert result["env"] == []  # consumed: a child of ours will not take them for its own


def test_a_descriptor_that_is_not_a_socket_is_an_error() -> None:
    script = textwrap.dedent(
        """
        import os
        from trio_timehttp import _systemd
        r, w = os.pipe()
        os.dup2(r, 3)
        try:
            _systemd.inherited_sockets({"LISTEN_FDS": "1", "LISTEN_PID": str(os.getpid())},
                                       os.getpid())
        except ValueError as exc:
            print(exc)
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, check=True, timeout=60, text=True
    ).stdout
    assert "fd 3 (unknown) is not a socket" in out


@pytest.fixture(params=["path", "abstract"])
def notify_socket(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[socket.socket, str]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    if request.param == "path":
        value = str(tmp_path / "notify")
        sock.bind(value)
    else:
        value = f"@trio-timehttp-test-{uuid.uuid4().hex}"
        sock.bind(b"\0" + value[1:].encode())
    sock.settimeout(10)
    yield sock, value
    sock.close()


def test_notify_sends_one_datagram(notify_socket: tuple[socket.socket, str]) -> None:
    sock, value = notify_socket
    assert _systemd.notify("READY=1\nSTATUS=serving", {"NOTIFY_SOCKET": value})
    assert sock.recv(4096) == b"READY=1\nSTATUS=serving"
    assert _systemd.notify("STOPPING=1", {"NOTIFY_SOCKET": value})
    assert sock.recv(4096) == b"STOPPING=1"


def test_notify_without_a_socket_is_quiet(caplog: pytest.LogCaptureFixture) -> None:
    assert not _systemd.notify("READY=1", {})
    assert not caplog.records


@pytest.mark.parametrize("value", ["relative/path", "vsock:2:1234", "@", "/nonexistent/notify"])
def test_unusable_notify_socket_is_a_warning_not_a_failure(
    value: str, caplog: pytest.LogCaptureFixture
) -> None:
    assert not _systemd.notify("READY=1", {"NOTIFY_SOCKET": value})
    assert [r.levelno for r in caplog.records] == [logging.WARNING]


def test_journal_stream_must_be_this_stderr() -> None:
    r, w = os.pipe()
    try:
        stat = os.fstat(w)
        value = f"{stat.st_dev}:{stat.st_ino}"
        assert _systemd.journal_stderr({"JOURNAL_STREAM": value}, fd=w)
        other_r, other_w = os.pipe()
        try:  # another stream: its output went elsewhere, keep the timestamps
            assert not _systemd.journal_stderr({"JOURNAL_STREAM": value}, fd=other_w)
        finally:
            os.close(other_r)
            os.close(other_w)
        assert not _systemd.journal_stderr({"JOURNAL_STREAM": "1:2"}, fd=w)
        assert not _systemd.journal_stderr({"JOURNAL_STREAM": "garbage"}, fd=w)
        assert not _systemd.journal_stderr({}, fd=w)
    finally:
        os.close(r)
        os.close(w)
