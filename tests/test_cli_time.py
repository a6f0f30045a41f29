"""``trio-timehttp time`` as a real subprocess against real local servers with known clocks.

Text, ``--json`` and plugin output, watch mode and its ending by a signal.
Readiness: servers start through ``nursery.start``; a subprocess is known to
be inside a reading when a listener sees its connection (bounded waits).
"""

from __future__ import annotations

import email.utils
import json
import signal
import socket
import subprocess
import sys
import time
from functools import partial

import pytest
import trio
from test_time_report import JSON_SOURCE_KEYS, JSON_SUMMARY_KEYS, PLUGIN_LINE

from trio_timehttp import serve_time

from helpers import ServerRequest, serve_http

CLI = [sys.executable, "-m", "trio_timehttp"]
#: RFC 868's 0 (1900-01-01): decodes to 2036-02-07, +9 years.
ZERO = -2208988800.0


async def run_cli(*args: str, check: bool = False) -> subprocess.CompletedProcess[bytes]:
    with trio.fail_after(60):
        return await trio.run_process([*CLI, *args], capture_stdout=True, capture_stderr=True,
                                      check=check)  # fmt: skip


async def tcp_server(
    nursery: trio.Nursery, offset: float = 0.0, *, clock: float | None = None
) -> str:
    def read_clock() -> float:
        return clock if clock is not None else time.time() + offset

    listeners, _ = await nursery.start(
        partial(serve_time, 0, host="127.0.0.1", udp=False, clock=read_clock)
    )
    return f"127.0.0.1:{listeners[0].socket.getsockname()[1]}"


async def udp_server(nursery: trio.Nursery) -> str:
    _, sockets = await nursery.start(
        partial(serve_time, 0, host="127.0.0.1", tcp=False, rate_limit=None)
    )
    return f"127.0.0.1:{sockets[0].getsockname()[1]}"


def dead_source() -> str:
    with socket.socket() as s:  # a port nobody listens on once this closes
        s.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{s.getsockname()[1]}"


# -- text --------------------------------------------------------------------------------------


async def test_text_one_line_per_source_naming_the_protocol_and_a_summary(
    nursery: trio.Nursery,
) -> None:
    a = await tcp_server(nursery)
    b = await tcp_server(nursery)
    result = await run_cli("time", a, "127.0.0.1", "--port", b.split(":")[1], check=True)
    lines = result.stdout.decode().splitlines()
    assert len(lines) == 3
    assert lines[0].startswith(f"{a}  tcp    offset ")
    assert lines[1].startswith("127.0.0.1        tcp    offset ")
    assert " s  +- " in lines[0]
    assert "rtt" in lines[0]
    assert lines[2].startswith("combined offset ")
    assert "2 of 2 answers agree" in lines[2]


async def test_text_marks_a_falseticker_and_says_so(nursery: trio.Nursery) -> None:
    right = [await tcp_server(nursery) for _ in range(3)]
    far = await tcp_server(nursery, 3600)
    result = await run_cli("time", *right, far, check=True)
    lines = result.stdout.decode().splitlines()
    assert lines[3].endswith("  falseticker")
    assert not any(line.endswith("falseticker") for line in lines[:3])
    assert "3 of 4 answers agree" in lines[4]
    assert f"falseticker: {far}" in lines[4]


async def test_text_two_that_disagree_cannot_be_told_apart(nursery: trio.Nursery) -> None:
    a = await tcp_server(nursery)
    b = await tcp_server(nursery, 100)
    result = await run_cli("time", a, b, check=True)
    summary = result.stdout.decode().splitlines()[-1]
    assert "the 2 answers disagree" in summary
    assert "cannot tell which is right" in summary


async def test_text_flags_a_server_sending_zero(nursery: trio.Nursery) -> None:
    right = await tcp_server(nursery)
    zero = await tcp_server(nursery, clock=ZERO)
    result = await run_cli("time", zero, right, check=True)
    lines = result.stdout.decode().splitlines()
    assert "offset +2898" in lines[0]
    assert "falseticker: implausible" in lines[0]
    assert f"implausible: {zero}" in lines[2]
    assert lines[2].startswith("combined offset ")


async def test_text_dead_source_and_none_answered(nursery: trio.Nursery) -> None:
    a = await tcp_server(nursery)
    dead = dead_source()
    result = await run_cli("time", a, dead, check=True)
    out = result.stdout.decode()
    assert f"{dead}  tcp    error: cannot connect" in out
    assert "(connect_error)" in out
    result = await run_cli("time", dead, "nosuch.invalid", "--timeout", "3")
    assert result.returncode == 1
    lines = result.stdout.decode().splitlines()
    assert sum("error: " in line for line in lines) == 2
    assert lines[-1] == "no source answered (2 of 2 failed)"
    assert "Traceback" not in result.stderr.decode()


async def test_text_precise_over_udp_and_a_url(nursery: trio.Nursery) -> None:
    def dated(request: ServerRequest) -> tuple[int, list[tuple[str, str]], bytes]:
        return 200, [("date", email.utils.formatdate(time.time(), usegmt=True))], b""

    udp = await udp_server(nursery)
    server = await nursery.start(serve_http, dated)
    result = await run_cli("time", "--precise", "--udp", udp, server.url("/"), check=True)
    lines = result.stdout.decode().splitlines()
    assert "  udp    offset" in lines[0]
    assert "  http   offset" in lines[1]
    for line in lines[:2]:
        uncertainty = float(line.split("+- ")[1].split(" s")[0])
        assert uncertainty < 0.1, line
    assert lines[2].startswith("combined offset")


# -- JSON --------------------------------------------------------------------------------------


async def test_json_lines(nursery: trio.Nursery) -> None:
    a = await tcp_server(nursery)
    far = await tcp_server(nursery, 100)
    b = await tcp_server(nursery)
    dead = dead_source()
    result = await run_cli("time", "--json", a, far, b, dead, check=True)
    objects = [json.loads(line) for line in result.stdout.decode().splitlines()]
    assert len(objects) == 5
    for obj, source in zip(objects[:3], [a, far, b], strict=True):
        assert list(obj) == JSON_SOURCE_KEYS
        assert obj["source"] == source
        assert obj["protocol"] == "tcp"
        assert obj["port"] == int(source.split(":")[1])
    assert [o["falseticker"] for o in objects[:3]] == [False, True, False]
    assert objects[1]["offset"] == pytest.approx(100, abs=1.5)
    assert objects[3]["source"] == dead
    assert objects[3]["error"]["kind"] == "connect_error"
    assert "cannot connect" in objects[3]["error"]["message"]
    summary = objects[4]["summary"]
    assert list(summary) == JSON_SUMMARY_KEYS
    assert (summary["sources"], summary["answered"], summary["falsetickers"]) == (4, 3, 1)
    assert abs(summary["offset"]) < 1.5


# -- plugin ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("offset", "args", "status", "name"),
    [
        (0.0, ["--warn", "5", "--crit", "10"], 0, "OK"),
        (7.0, ["--warn", "5", "--crit", "10"], 1, "WARNING"),
        (60.0, ["--warn", "5", "--crit", "10"], 2, "CRITICAL"),
        (-60.0, ["--crit", "10"], 2, "CRITICAL"),
        # A true offset just past --warn is never OK, wherever the whole-second
        # reading puts the middle: the interval holds the truth, so the bound
        # |offset| + uncertainty is at least 5.01.
        (5.01, ["--warn", "5", "--crit", "10"], 1, "WARNING"),
    ],
)
async def test_plugin_states(
    nursery: trio.Nursery, offset: float, args: list[str], status: int, name: str
) -> None:
    sources = [await tcp_server(nursery, offset) for _ in range(2)]
    result = await run_cli("time", *sources, *args)
    line = result.stdout.decode()
    assert line.count("\n") == 1
    match = PLUGIN_LINE.match(line.rstrip("\n"))
    assert match, line
    assert match.group(1) == name
    assert result.returncode == status
    assert " | offset=" in line


async def test_plugin_unknown_when_none_answered_or_no_majority(nursery: trio.Nursery) -> None:
    result = await run_cli("time", dead_source(), "--warn", "1", "--crit", "2")
    assert result.returncode == 3
    assert result.stdout.decode().startswith("TIME UNKNOWN - no source answered")
    a = await tcp_server(nursery)
    b = await tcp_server(nursery, 100)
    result = await run_cli("time", a, b, "--warn", "1", "--crit", "2")
    assert result.returncode == 3
    line = result.stdout.decode().rstrip("\n")
    assert PLUGIN_LINE.match(line), line
    assert "cannot tell which is right" in line


@pytest.mark.parametrize(
    ("args", "message", "status"),
    [
        # Plugin mode (--warn/--crit): a mistake is UNKNOWN (3); 2 would read as CRITICAL.
        (["--json", "--warn", "1"], "two different outputs", 3),
        (["--warn", "3", "--crit", "2"], "--warn 3 is above --crit 2", 3),
        (["--warn", "abc"], "--warn", 3),
        (["--crit=2", "--count", "0"], "must be from 1", 3),
        (["--crit", "2", "--bogus"], "unrecognized arguments: --bogus", 3),
        (["--warn"], "expected one argument", 3),
        # Otherwise the usual 2.
        (["--count", "0"], "must be from 1", 2),
        (["--interval", "0"], "positive number", 2),
        (["--bogus"], "unrecognized arguments: --bogus", 2),
    ],
)
async def test_usage_errors(args: list[str], message: str, status: int, refused_port: int) -> None:
    result = await run_cli("time", f"127.0.0.1:{refused_port}", *args)
    err = result.stderr.decode()
    assert result.returncode == status
    assert message in err
    assert len(err.strip().splitlines()) == 1
    assert "Traceback" not in err


# -- watch -------------------------------------------------------------------------------------


async def test_watch_text_one_line_per_reading_then_a_summary(nursery: trio.Nursery) -> None:
    udp = await udp_server(nursery)
    result = await run_cli("time", "--udp", udp, "--interval", "0.05", "--count", "3", check=True)
    lines = result.stdout.decode().splitlines()
    assert len(lines) == 4
    for line in lines[:3]:
        assert "  udp  combined offset " in line
        assert line[:4].isdigit()
        assert line[19] == "Z"
    assert lines[3].startswith("--- 3 readings: combined offset min ")


async def test_watch_json_keeps_stdout_json(nursery: trio.Nursery) -> None:
    a = await tcp_server(nursery)
    result = await run_cli("time", "--json", a, dead_source(), "--count", "2",
                           "--interval", "0.05", check=True)  # fmt: skip
    objects = [json.loads(line) for line in result.stdout.decode().splitlines()]
    assert len(objects) == 6
    assert [next(iter(o)) for o in objects] == ["source", "source", "summary"] * 2
    assert result.stderr.decode().startswith("--- 2 readings")


async def test_watch_plugin_exits_with_the_worst_state(nursery: trio.Nursery) -> None:
    a = await tcp_server(nursery, 7)
    result = await run_cli("time", a, "--warn", "5", "--interval", "0.05", "--count", "2")
    lines = result.stdout.decode().splitlines()
    assert len(lines) == 2
    assert all(PLUGIN_LINE.match(line) for line in lines)
    assert result.returncode == 1


async def _read_lines(stream: trio.abc.ReceiveStream, n: int) -> bytes:
    data = b""
    while data.count(b"\n") < n:
        chunk = await stream.receive_some(65536)
        assert chunk, data
        data += chunk
    return data


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
async def test_a_signal_ends_a_watch_with_its_summary(nursery: trio.Nursery, signum: int) -> None:
    udp = await udp_server(nursery)
    proc = await trio.lowlevel.open_process(
        [*CLI, "time", "--udp", udp, "--interval", "0.05"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdout is not None
    assert proc.stderr is not None
    try:
        with trio.fail_after(30):
            await _read_lines(proc.stdout, 2)
            proc.send_signal(signum)
            assert await proc.wait() == 0
            out = b""
            while chunk := await proc.stdout.receive_some(65536):
                out += chunk
            err = await proc.stderr.receive_some(65536)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        await proc.stdout.aclose()
        await proc.stderr.aclose()
    assert b"--- " in out
    assert out.rstrip().splitlines()[-1].startswith(b"--- ")
    assert b"Traceback" not in err


@pytest.mark.parametrize(("signum", "status"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
async def test_a_signal_before_the_first_reading_exits_as_interrupted(
    signum: int, status: int
) -> None:
    # A listener nobody accepts from: the connection completes in the backlog
    # and the reading waits for 4 bytes that never come.
    with trio.socket.socket() as silent:
        await silent.bind(("127.0.0.1", 0))
        silent.listen()
        source = f"127.0.0.1:{silent.getsockname()[1]}"
        proc = await trio.lowlevel.open_process(
            [*CLI, "time", source, "--interval", "1", "--timeout", "30"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )  # fmt: skip
        try:
            with trio.fail_after(30):
                conn, _ = await silent.accept()  # the reading is under way
                proc.send_signal(signum)
                assert await proc.wait() == status
            conn.close()
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
            assert proc.stdout is not None
            assert proc.stderr is not None
            err = await proc.stderr.receive_some(65536)
            await proc.stdout.aclose()
            await proc.stderr.aclose()
    assert b"Traceback" not in err
