"""The ``serve --workers`` supervisor's parts: the port lock, a worker that dies before serving."""

from __future__ import annotations

import errno
import logging
import shutil
import socket

import pytest

from trio_timehttp import _workers


def test_port_lock_is_exclusive_and_freed_on_close() -> None:
    port = 40000 + (id(object()) % 20000)
    first = _workers.port_lock(["tcp", "udp"], port)
    try:
        with pytest.raises(OSError, match="in use") as info:
            _workers.port_lock(["udp"], port)
        assert info.value.errno == errno.EADDRINUSE
        # Another port, or the same port over another protocol, is another lock.
        _workers.port_lock(["tcp"], port + 1)[0].close()
    finally:
        for lock in first:
            lock.close()
    again = _workers.port_lock(["tcp", "udp"], port)  # freed with the sockets
    for lock in again:
        lock.close()


def test_port_lock_takes_nothing_when_one_protocol_is_taken() -> None:
    port = 40000 + (id(object()) % 20000)
    (udp,) = _workers.port_lock(["udp"], port)
    try:
        with pytest.raises(OSError, match="in use"):
            _workers.port_lock(["tcp", "udp"], port)
        _workers.port_lock(["tcp"], port)[0].close()  # the tcp lock was released again
    finally:
        udp.close()


async def test_a_worker_that_exits_before_serving_stops_the_start(
    caplog: pytest.LogCaptureFixture,
) -> None:
    false = shutil.which("false")
    assert false is not None
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    calls: list[str] = []
    hooks = _workers.Hooks(
        spawned=lambda: calls.append("spawned"),
        ready=lambda pids: calls.append("ready"),
        stopping=lambda: calls.append("stopping"),
    )
    caplog.set_level(logging.ERROR, logger="trio_timehttp.cli")
    status = await _workers.supervise([false], [[sock], [sock]], hooks)
    assert status == 1
    assert calls == ["spawned", "stopping"]  # never ready
    assert sock.fileno() == -1  # handed down, then closed here
    assert "exited with status 1; stopping the others" in caplog.text


@pytest.mark.parametrize(
    ("returncode", "text", "status"),
    [
        (3, "exited with status 3", 3),
        (0, "exited with status 0", 1),  # a worker ending on its own is a failure
        (-9, "was killed by SIGKILL", 137),
        (-15, "was killed by SIGTERM", 143),
        (-6, "was killed by SIGABRT", 134),
    ],
)
def test_how_a_worker_ended_and_the_supervisors_status(
    returncode: int, text: str, status: int
) -> None:
    assert _workers.how_it_ended(returncode) == text
    assert _workers.exit_status(returncode) == status
