"""The RFC 868 examples (ports of the seed's 7-7 and 7-8) run as real programs."""

from __future__ import annotations

import functools
import subprocess
import sys
import time
from pathlib import Path

import pytest
import trio

from trio_timehttp import encode_time, serve_time_tcp

from peerutil import Lines

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("", 0))
        return int(s.getsockname()[1])


async def run_client(*args: str) -> subprocess.CompletedProcess[bytes]:
    with trio.fail_after(30):
        return await trio.run_process(
            [sys.executable, str(EXAMPLES / "time_client.py"), *args],
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )


@pytest.mark.parametrize("shift", [0.0, 100.0, -3600.0])
async def test_time_client_prints_the_difference(nursery: trio.Nursery, shift: float) -> None:
    listeners = await nursery.start(
        functools.partial(serve_time_tcp, 0, host="127.0.0.1", clock=lambda: time.time() + shift)
    )
    result = await run_client("127.0.0.1", str(listeners[0].socket.getsockname()[1]))
    assert result.returncode == 0, result.stderr
    words = result.stdout.decode().split()
    assert words[:3] == ["time", "difference", "is"]
    # local - server, whole seconds; a tick may fall between the two reads.
    assert -shift - 1 <= int(words[3]) <= -shift + 1


async def test_time_client_reports_a_dead_server(refused_port: int) -> None:
    result = await run_client("127.0.0.1", str(refused_port))
    assert result.returncode == 1
    assert b"refused" in result.stderr
    assert result.stdout == b""


async def test_time_server_and_client_together() -> None:
    port = free_port()
    proc = await trio.lowlevel.open_process(
        [sys.executable, str(EXAMPLES / "time_server.py"), str(port)],
        stdout=subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        with trio.fail_after(30):
            # Its own line is the readiness signal: no sleeping.
            assert await Lines(proc.stdout).next() == f"listening on port {port}"
            with trio.socket.socket() as sock:
                await sock.connect(("127.0.0.1", port))
                data = await sock.recv(100)
                assert len(data) == 4
                assert (
                    abs(
                        int.from_bytes(data, "big")
                        - int.from_bytes(encode_time(time.time()), "big")
                    )
                    <= 1
                )
                assert await sock.recv(100) == b""  # the server closed
        result = await run_client("localhost", str(port))
        assert result.returncode == 0, result.stderr
        assert result.stdout.decode().split()[:3] == ["time", "difference", "is"]
        assert abs(int(result.stdout.split()[3])) <= 1
    finally:
        proc.terminate()
        await proc.wait()


async def test_time_server_ctrl_c_at_a_terminal_is_130_without_a_traceback() -> None:
    """On 3.11 contextlib.suppress did not unwrap the nursery's group: a traceback, exit 1."""
    from ptyutil import Terminal, finish

    port = free_port()
    term = Terminal()
    proc = await term.start([sys.executable, str(EXAMPLES / "time_server.py"), str(port)])
    try:
        await term.read_until(f"listening on port {port}".encode())
        term.ctrl_c()
        assert await finish(proc) == 130
        out = await term.read_to_end()
    finally:
        await finish(proc)
        term.close()
    assert b"Traceback" not in out
    assert b"KeyboardInterrupt" not in out


@pytest.mark.parametrize(
    ("script", "args"),
    [
        ("time_client.py", ["localhost", "abc"]),
        ("time_client.py", ["localhost", "99999"]),  # before: exit 1, "out of range"
        ("time_client.py", ["localhost", "0"]),
        ("time_server.py", ["http"]),
        ("time_server.py", ["99999"]),  # before: a traceback (OverflowError from bind)
    ],
)
async def test_bad_arguments_are_a_usage_line(script: str, args: list[str]) -> None:
    with trio.fail_after(30):
        result = await trio.run_process(
            [sys.executable, str(EXAMPLES / script), *args],
            capture_stdout=True, capture_stderr=True, check=False,
        )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.decode().startswith("usage: ")
    assert b"Traceback" not in result.stderr
