"""The ``trio-timehttp`` command, run as a real subprocess against real local servers.

Mistakes must be one line on stderr with a non-zero exit, never a traceback.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
from functools import partial

import pytest
import trio

from trio_timehttp import serve_time

from helpers import ServerRequest, serve_http
from peerutil import unused_port, wait_for_tcp

CLI = [sys.executable, "-m", "trio_timehttp"]


async def run_cli(*args: str, check: bool = False) -> subprocess.CompletedProcess[bytes]:
    """Run the command in a subprocess without blocking the test's event loop."""
    with trio.fail_after(60):
        return await trio.run_process([*CLI, *args], capture_stdout=True, capture_stderr=True,
                                      check=check)  # fmt: skip


def one_line_error(result: subprocess.CompletedProcess[bytes]) -> str:
    err = result.stderr.decode()
    assert result.returncode != 0
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err
    return err


async def time_server(nursery: trio.Nursery, **kwargs: object) -> tuple[int, int]:
    listeners, sockets = await nursery.start(partial(serve_time, 0, host="127.0.0.1", **kwargs))
    tcp = listeners[0].socket.getsockname()[1] if listeners else 0
    udp = sockets[0].getsockname()[1] if sockets else 0
    return tcp, udp


# -- usage ------------------------------------------------------------------------------------


@pytest.mark.parametrize("command", [[], ["serve"], ["time"], ["get"], ["demo"]])
async def test_help_everywhere(command: list[str]) -> None:
    result = await run_cli(*command, "--help", check=True)
    assert b"usage: trio-timehttp" in result.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "required: COMMAND"),
        (["serve", "--port", "99999"], "--port: must be from 0 to 65535"),
        (["serve", "--port", "http"], "not a whole number"),
        (["serve", "--no-tcp", "--no-udp"], "nothing to serve"),
        (["time"], "required: SOURCE"),
        (["time", "--timeout", "-1", "x"], "positive number of seconds"),
        (["get", "http://x/", "-H", "no colon"], "a header is 'Name: value'"),
        (["get", "http://x/", "--bogus"], "unrecognized arguments: --bogus"),
        (["get", "http://x/", "-o", "/nonexistent/dir/f"], "no such directory /nonexistent/dir"),
        (["frobnicate"], "invalid choice"),
    ],
)
async def test_usage_mistakes_are_one_line(args: list[str], message: str) -> None:
    result = await run_cli(*args)
    assert result.returncode == 2
    assert message in one_line_error(result)


async def test_version() -> None:
    import trio_timehttp

    result = await run_cli("--version", check=True)
    assert result.stdout.decode().strip() == f"trio-timehttp {trio_timehttp.__version__}"


# -- serve ------------------------------------------------------------------------------------


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
async def test_serve_answers_then_stops_cleanly_on_a_signal(signum: int) -> None:
    port = unused_port()
    proc = await trio.lowlevel.open_process(
        [*CLI, "serve", "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        await trio.to_thread.run_sync(partial(wait_for_tcp, "127.0.0.1", port))
        result = await run_cli("time", f"127.0.0.1:{port}", check=True)
        assert b"offset" in result.stdout
        udp = await run_cli("time", "--udp", f"127.0.0.1:{port}", check=True)
        assert b"offset" in udp.stdout
        proc.send_signal(signum)
        with trio.fail_after(10):
            status = await proc.wait()
        assert status == 0
        assert proc.stderr is not None
        log = (await proc.stderr.receive_some(65536)).decode()
        assert f"received {signal.Signals(signum).name}, stopping" in log
        assert "Traceback" not in log
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()
        for pipe in (proc.stdout, proc.stderr):
            if pipe is not None:
                await pipe.aclose()


async def test_serve_workers_share_the_port_and_stop_together() -> None:
    port = unused_port()
    proc = await trio.lowlevel.open_process(
        [*CLI, "serve", "--host", "127.0.0.1", "--port", str(port), "--workers", "2"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        await trio.to_thread.run_sync(partial(wait_for_tcp, "127.0.0.1", port))
        for _ in range(4):
            result = await run_cli("time", f"127.0.0.1:{port}", check=True)
            assert b"offset" in result.stdout
        proc.send_signal(signal.SIGTERM)
        with trio.fail_after(20):
            assert await proc.wait() == 0
        assert proc.stderr is not None
        log = b""
        while chunk := await proc.stderr.receive_some(65536):
            log += chunk
        text = log.decode()
        assert "started 2 workers" in text
        assert text.count("listening on tcp") == 2
        assert text.count("INFO stopped") == 2
        assert "Traceback" not in text
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()
        if proc.stderr is not None:
            await proc.stderr.aclose()
    # Every worker is gone: the port is free again (SO_REUSEADDR: the
    # server-closed connections linger in TIME_WAIT, that is not a listener).
    with socket.socket() as again:
        again.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        again.bind(("127.0.0.1", port))
        again.listen()


async def test_serve_workers_need_a_fixed_port() -> None:
    result = await run_cli("serve", "--port", "0", "--workers", "2")
    assert "--workers needs a fixed --port" in one_line_error(result)


async def test_serve_port_in_use_is_one_line() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = await run_cli("serve", "--host", "127.0.0.1", "--port", str(port), "--no-udp")
    assert "address already in use" in one_line_error(result)


async def test_serve_port_37_without_privilege_suggests_another_port() -> None:
    command = [*CLI, "serve", "--host", "127.0.0.1"]
    if os.geteuid() == 0:
        # Root may bind low ports; drop just that capability for the child.
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("needs setpriv (util-linux) to run without CAP_NET_BIND_SERVICE as root")
        command = [setpriv, "--bounding-set", "-net_bind_service", *command]
    with trio.fail_after(60):
        result = await trio.run_process(
            command, capture_stdout=True, capture_stderr=True, check=False
        )
    err = one_line_error(result)
    assert "permission denied" in err
    assert "--port 8037" in err


# -- time -------------------------------------------------------------------------------------


# The time subcommand's tests are in test_cli_time.py.


# -- get --------------------------------------------------------------------------------------


def site(request: ServerRequest) -> tuple[int, list[tuple[str, str]], bytes]:
    if request.target == "/old":
        return 302, [("location", "/new")], b""
    if request.target == "/echo":
        return 200, [("x-got", request.header("x-test") or "")], b""
    return 200, [("content-type", "text/plain")], b"x" * 1000


async def test_get_prints_like_the_dummy_consumer(nursery: trio.Nursery) -> None:
    server = await nursery.start(serve_http, site)
    result = await run_cli("get", server.url("/new"), check=True)
    lines = result.stdout.decode().splitlines()
    assert lines[0] == "status => HTTP/1.1 200 OK"
    assert "content-type = text/plain" in lines
    assert "content-length = 1000" in lines
    assert lines[-1] == "1000 bytes in body"


async def test_get_follows_redirects_unless_told_not_to(nursery: trio.Nursery) -> None:
    server = await nursery.start(serve_http, site)
    followed = await run_cli("get", server.url("/old"), check=True)
    assert "status => HTTP/1.1 200 OK" in followed.stdout.decode()
    raw = await run_cli("get", "--no-redirects", server.url("/old"), check=True)
    out = raw.stdout.decode()
    assert out.startswith("status => HTTP/1.1 302 Found")
    assert "location = /new" in out
    limited = await run_cli("get", "--max-redirects", "0", server.url("/old"))
    assert "redirect" in one_line_error(limited).lower()


async def test_get_sends_extra_headers(nursery: trio.Nursery) -> None:
    server = await nursery.start(serve_http, site)
    result = await run_cli("get", "-H", "X-Test: hello", server.url("/echo"), check=True)
    assert "x-got = hello" in result.stdout.decode()


async def test_get_output_file_without_progress_when_piped(
    nursery: trio.Nursery, tmp_path: object
) -> None:
    import pathlib

    target = pathlib.Path(str(tmp_path)) / "body.bin"
    server = await nursery.start(serve_http, site)
    result = await run_cli("get", server.url("/new"), "-o", str(target), check=True)
    assert target.read_bytes() == b"x" * 1000
    assert result.stderr == b""  # no progress bar when stderr is not a terminal
    assert result.stdout.decode().splitlines()[-1] == "1000 bytes in body"


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("http://127.0.0.1:{refused}/", "127.0.0.1:{refused}"),
        ("http://nosuch.invalid/", "nosuch.invalid"),
    ],
)
async def test_get_failures_are_one_line(url: str, fragment: str, refused_port: int) -> None:
    url, fragment = url.format(refused=refused_port), fragment.format(refused=refused_port)
    result = await run_cli("get", url, "--timeout", "5")
    assert result.returncode == 1
    assert fragment in one_line_error(result)


async def test_get_into_a_closed_pipe_ends_quietly(nursery: trio.Nursery) -> None:
    server = await nursery.start(serve_http, site)
    with trio.fail_after(60):
        result = await trio.run_process(
            ["bash", "-c", f"set -o pipefail; {' '.join(CLI)} get {server.url('/new')} | head -1"],
            capture_stdout=True, capture_stderr=True, check=False,
        )  # fmt: skip
    assert result.stdout.decode() == "status => HTTP/1.1 200 OK\n"
    assert result.stderr == b""
    assert result.returncode == 0


# -- demo -------------------------------------------------------------------------------------


async def test_demo_runs_the_seed_examples_and_exits_0() -> None:
    result = await run_cli("demo", check=True)
    out = result.stdout.decode()
    assert "time difference is " in out
    assert "status => HTTP/1.1 200 OK" in out
    assert "redirecting to http://127.0.0.1:" in out
    assert out.count(" bytes in body") == 2
    assert "offset" in out
    assert result.stderr == b""


async def test_get_output_file_shows_progress_on_a_terminal(
    nursery: trio.Nursery, tmp_path: object
) -> None:
    import pathlib
    import pty

    target = pathlib.Path(str(tmp_path)) / "body.bin"
    server = await nursery.start(serve_http, site)
    master, slave = pty.openpty()  # stderr is a terminal: the bar appears there
    try:
        with trio.fail_after(60):
            result = await trio.run_process(
                [*CLI, "get", server.url("/new"), "-o", str(target)],
                capture_stdout=True, stderr=slave, check=True,
            )  # fmt: skip
        os.close(slave)
        slave = -1
        seen = b""
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the pty's other side is closed and drained
                break
            if not chunk:
                break
            seen += chunk
    finally:
        if slave >= 0:
            os.close(slave)
        os.close(master)
    assert target.read_bytes() == b"x" * 1000
    assert b"100% 1000 B/1000 B" in seen
    assert b"\r[" in seen
    assert result.returncode == 0


# -- what every subcommand shares: -v anywhere, usage errors, Ctrl-C, SIGTERM, pipes -----------


async def test_verbose_after_the_subcommand_counts_with_the_one_before(refused_port: int) -> None:
    url = f"http://127.0.0.1:{refused_port}/"  # refused at once; "connecting" is logged at DEBUG
    quiet = await run_cli("get", url)
    assert b"DEBUG" not in quiet.stderr
    after = await run_cli("get", "-vv", url)
    assert b" DEBUG " in after.stderr
    both = await run_cli("-v", "get", "-v", url)
    assert b" DEBUG " in both.stderr  # -v before plus -v after: -vv
    one = await run_cli("get", "-v", url)
    assert b" DEBUG " not in one.stderr
    assert b"> GET / HTTP/1.1" in one.stderr


@pytest.mark.parametrize(
    ("args", "command"),
    [
        (["time", "--bogus", "x"], "time"),
        (["get", "http://x/", "extra"], "get"),
        (["serve", "--no-tcp", "--no-udp"], "serve"),  # found by the command, not argparse
        (["demo", "--nope"], "demo"),
    ],
)
async def test_a_subcommands_usage_error_points_to_its_help(args: list[str], command: str) -> None:
    result = await run_cli(*args)
    assert result.returncode == 2
    err = one_line_error(result)
    assert err.startswith(f"trio-timehttp {command}: error: ")
    assert err.rstrip().endswith(f"(see trio-timehttp {command} --help)")


async def silent_listener(nursery: trio.Nursery) -> tuple[int, trio.Event]:
    """A TCP port that accepts and never answers; the event fires at the first accept."""
    listener = (await trio.open_tcp_listeners(0, host="127.0.0.1"))[0]
    accepted = trio.Event()

    async def hold(stream: trio.SocketStream) -> None:
        accepted.set()
        await trio.sleep_forever()

    nursery.start_soon(partial(trio.serve_listeners, hold, [listener]))
    return listener.socket.getsockname()[1], accepted


async def test_ctrl_c_at_a_terminal_during_time(nursery: trio.Nursery) -> None:
    """^C typed at the terminal while sources are pending: exit 130, one line, no group."""
    from ptyutil import Terminal, finish

    port, accepted = await silent_listener(nursery)
    term = Terminal(columns=80)
    proc = await term.start([*CLI, "time", f"127.0.0.1:{port}"])
    try:
        with trio.fail_after(30):
            await accepted.wait()
        term.ctrl_c()
        assert await finish(proc) == 130
        out = (await term.read_to_end()).decode()
    finally:
        await finish(proc)
        term.close()
    assert "trio-timehttp: interrupted" in out
    assert "Traceback" not in out
    assert "ExceptionGroup" not in out


@pytest.mark.parametrize("command", ["time", "get"])
async def test_sigterm_during_a_command_is_one_line_and_143(
    nursery: trio.Nursery, command: str
) -> None:
    port, accepted = await silent_listener(nursery)
    target = f"127.0.0.1:{port}" if command == "time" else f"http://127.0.0.1:{port}/"
    proc = await trio.lowlevel.open_process(
        [*CLI, command, target], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        with trio.fail_after(30):
            await accepted.wait()
        proc.send_signal(signal.SIGTERM)
        with trio.fail_after(30):
            status = await proc.wait()
        assert proc.stderr is not None
        err = await proc.stderr.receive_some()
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()
        for pipe in (proc.stdout, proc.stderr):
            if pipe is not None:
                await pipe.aclose()
    assert status == 143
    assert err == b"trio-timehttp: terminated\n"


async def test_demo_into_a_closed_pipe_ends_quietly() -> None:
    with trio.fail_after(60):
        result = await trio.run_process(
            ["bash", "-c", f"set -o pipefail; {' '.join(CLI)} demo | head -1"],
            capture_stdout=True, capture_stderr=True, check=False,
        )  # fmt: skip
    assert result.stdout.decode().startswith("time server on 127.0.0.1 port ")
    assert result.stdout.count(b"\n") == 1
    assert result.stderr == b""
    assert result.returncode == 0


async def test_describe_names_causes_in_words() -> None:
    from trio_timehttp import ConnectError, ProtocolError
    from trio_timehttp._cli_args import describe

    refused = ConnectionRefusedError(
        111, "Error connecting to ('127.0.0.1', 9): Connection refused"
    )
    try:
        raise ConnectError("cannot connect to 127.0.0.1:9") from OSError("all attempts failed")
    except ConnectError as exc:
        exc.__cause__.__cause__ = ExceptionGroup("attempts", [refused])  # type: ignore[union-attr]
        text = describe(exc)
    assert text == "ConnectError: cannot connect to 127.0.0.1:9 (connection refused)"
    bad = ProtocolError("illegal status line: bytearray(b'HTTP/1.1 2x0')")
    assert describe(bad) == 'ProtocolError: illegal status line: "HTTP/1.1 2x0"'
    assert describe(PermissionError(13, "Permission denied", "out.bin")) == (
        "out.bin: Permission denied"
    )


@pytest.mark.parametrize(
    ("cause", "shown"),
    [
        (
            ssl.SSLCertVerificationError(1, "[SSL: CERTIFICATE_VERIFY_FAILED] bad (_ssl.c:1006)"),
            "[SSL: CERTIFICATE_VERIFY_FAILED] bad",
        ),
        (
            ssl.SSLError(1, "[SSL: WRONG_VERSION_NUMBER] wrong version number (_ssl.c:1006)"),
            "[SSL: WRONG_VERSION_NUMBER] wrong version number",
        ),
        (
            ssl.SSLZeroReturnError(6, "TLS/SSL connection has been closed (EOF) (_ssl.c:992)"),
            "TLS/SSL connection has been closed (EOF)",
        ),
        (
            ConnectionResetError(104, "Connection reset by peer"),
            "Connection reset by peer",  # the words already there: not twice
        ),
        (ConnectionRefusedError(111, "refused at h"), "refused at h (connection refused)"),
    ],
)
def test_describe_adds_the_system_words_only_for_system_errors(cause: OSError, shown: str) -> None:
    """An SSLError's errno is OpenSSL's code, not the system's; "(_ssl.c:NNNN)" goes."""
    from trio_timehttp import ConnectError
    from trio_timehttp._cli_args import describe

    try:
        raise ConnectError(f"TLS handshake with h:443 failed: {cause.strerror}") from cause
    except ConnectError as exc:
        text = describe(exc)
    assert text == f"ConnectError: TLS handshake with h:443 failed: {shown}"
    assert describe(cause) == shown.partition(" (connection")[0]


async def test_an_ignored_sigint_stays_ignored_and_sigterm_still_cleans_up(
    nursery: trio.Nursery, tmp_path: object
) -> None:
    """A job started with ``&`` inherits SIGINT ignored: Trio then has no KI handler of its
    own, and a SIGTERM handler raising KeyboardInterrupt inside Trio's loop corrupted it."""
    import pathlib

    port, accepted = await silent_listener(nursery)
    directory = pathlib.Path(str(tmp_path))
    command = [*CLI, "get", f"http://127.0.0.1:{port}/", "-o", str(directory / "out")]
    proc = await trio.lowlevel.open_process(
        ["bash", "-c", 'trap "" INT; exec "$@"', "bash", *command],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        with trio.fail_after(30):
            await accepted.wait()
        proc.send_signal(signal.SIGINT)  # ignored, as the shell asked
        proc.send_signal(signal.SIGTERM)
        with trio.fail_after(30):
            status = await proc.wait()
        assert proc.stderr is not None
        err = await proc.stderr.receive_some()
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()
        for pipe in (proc.stdout, proc.stderr):
            if pipe is not None:
                await pipe.aclose()
    assert (status, err) == (143, b"trio-timehttp: terminated\n")
    assert os.listdir(directory) == []
