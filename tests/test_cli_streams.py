"""The command line with stdin or stdout closed or full, and argparse's own mistakes.

Real subprocesses, their descriptors closed by a shell (``>&-``, ``<&-``) or
stdout on ``/dev/full``: each ends with one line on stderr and the status the
README's table gives, never an internal error.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
from functools import partial
from pathlib import Path

import pytest
import trio
from test_cli import one_line_error, time_server

from helpers import ServerRequest, closed_port, serve_http

# Held for the module's life: connections there are refused, and nothing else can take it.
_REFUSED_HOLD = closed_port()
REFUSED = _REFUSED_HOLD.__enter__()

CLI = [sys.executable, "-m", "trio_timehttp"]


async def run_redirected(redirect: str, *args: str) -> subprocess.CompletedProcess[bytes]:
    """Run the command through ``sh`` with ``redirect`` (``>&-``, ``<&-``, ``>/dev/full``)."""
    script = f'exec "$@" {redirect}'
    with trio.fail_after(60):
        return await trio.run_process(["sh", "-c", script, "sh", *CLI, *args],
                                      capture_stdout=redirect.startswith("<"),
                                      capture_stderr=True, check=False)  # fmt: skip


async def test_time_with_stdout_closed_ends_quietly() -> None:
    async with trio.open_nursery() as nursery:
        tcp, _ = await time_server(nursery)
        result = await run_redirected(">&-", "time", f"127.0.0.1:{tcp}")
        nursery.cancel_scope.cancel()
    assert result.returncode == 0, result.stderr
    assert result.stderr == b""


async def test_get_to_stdout_with_stdout_closed_says_so() -> None:
    result = await run_redirected(">&-", "get", "-o", "-", f"http://127.0.0.1:{REFUSED}/")
    err = one_line_error(result)
    assert result.returncode == 1
    assert "stdout is closed" in err
    assert "internal error" not in err


@pytest.mark.parametrize("option", ["-d", "--data-binary"])
async def test_data_from_closed_stdin_is_a_usage_error(option: str) -> None:
    result = await run_redirected("<&-", "get", option, "@-", f"http://127.0.0.1:{REFUSED}/")
    err = one_line_error(result)
    assert result.returncode == 2
    assert f"{option} @-: stdin is closed" in err


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
@pytest.mark.parametrize("args", [["--help"], ["--version"], ["get", "--help"]])
async def test_help_and_version_to_a_full_stdout_fail(args: list[str]) -> None:
    result = await run_redirected(">/dev/full", *args)
    err = one_line_error(result)
    assert result.returncode == 1
    assert "cannot write to stdout" in err


async def test_version_still_prints() -> None:
    result = await trio.run_process([*CLI, "--version"], capture_stdout=True, check=True)
    assert result.stdout.startswith(b"trio-timehttp ")


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["-x"], "unrecognized arguments: -x"),
        (["time", "--pre", "h"], "unrecognized arguments: --pre"),
    ],
)
async def test_unknown_options_are_named_and_never_abbreviations(
    args: list[str], named: str
) -> None:
    result = await trio.run_process([*CLI, *args], capture_stderr=True, check=False)
    err = one_line_error(result)
    assert result.returncode == 2
    assert named in err


# -- a failure to listen is a runtime failure, in words, exit 1 --------------------------------


async def test_listen_failures_name_what_and_where_and_exit_1() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        commands = {
            f"cannot listen for metrics on 127.0.0.1:{port}: address already in use": [
                "monitor", f"127.0.0.1:{REFUSED}", "--metrics-port", str(port)],
            f"cannot bind port {port}: address already in use": [
                "serve", "--host", "127.0.0.1", "--port", str(port), "--no-udp"],
        }  # fmt: skip
        for message, args in commands.items():
            result = await trio.run_process([*CLI, *args], capture_stderr=True, check=False)
            err = one_line_error(result)
            assert result.returncode == 1, err
            assert message in err
            assert "--help" not in err


async def test_monitor_metrics_host_that_does_not_resolve() -> None:
    args = [
        "monitor",
        f"127.0.0.1:{REFUSED}",
        "--metrics-port",
        "0",
        "--metrics-host",
        "999.0.0.1",
    ]
    result = await trio.run_process([*CLI, *args], capture_stderr=True, check=False)
    err = one_line_error(result)
    assert result.returncode == 1
    assert "cannot listen for metrics on 999.0.0.1:0: no such address" in err


async def test_hidden_worker_fds_that_are_not_numbers_is_a_usage_error() -> None:
    result = await trio.run_process([*CLI, "serve", "--worker-fds", "abc"], capture_stderr=True,
                                    check=False)  # fmt: skip
    err = one_line_error(result)
    assert result.returncode == 2
    assert "--worker-fds: not descriptor numbers" in err


# -- -o FIFO: the deadline holds before a reader comes; a reader that goes is an error -------

BIG = b"x" * (8 << 20)


def big(request: ServerRequest) -> tuple[int, list[tuple[str, str]], bytes]:
    return 200, [], BIG


async def test_a_fifo_without_a_reader_keeps_the_deadline(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with trio.fail_after(30):  # before: blocked in open() forever
        result = await trio.run_process(
            [*CLI, "get", "--timeout", "1", "-o", str(fifo), f"http://127.0.0.1:{REFUSED}/"],
            capture_stdout=True, capture_stderr=True, check=False,
        )  # fmt: skip
    err = one_line_error(result)
    assert result.returncode == 1
    assert f"cannot write {fifo}: no reader on the FIFO within 1 s" in err
    assert os.listdir(tmp_path) == ["pipe"]


async def test_a_fifo_whose_reader_goes_away_is_an_error_naming_it(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    async with trio.open_nursery() as nursery:
        server = await nursery.start(partial(serve_http, big))
        with trio.fail_after(60):
            reader = await trio.lowlevel.open_process(["head", "-c", "1000", str(fifo)],
                                                      stdout=subprocess.DEVNULL)  # fmt: skip
            result = await trio.run_process(
                [*CLI, "get", "-o", str(fifo), server.url("/")],
                capture_stdout=True, capture_stderr=True, check=False,
            )  # fmt: skip
            assert await reader.wait() == 0
        nursery.cancel_scope.cancel()
    err = result.stderr.decode()
    assert result.returncode == 1, err  # curl exits 23: never 0 for a cut body
    assert f"{fifo}: Broken pipe" in err
    assert "Traceback" not in err
    assert b"bytes in body" not in result.stdout


async def piped(reader: str, *args: str) -> subprocess.CompletedProcess[bytes]:
    """``CLI args | reader``: the command's stderr, and its own status (not the reader's)."""
    with trio.fail_after(60):
        return await trio.run_process(
            ["bash", "-c", f'"$@" | {reader}; exit "${{PIPESTATUS[0]}}"', "bash", *CLI, *args],
            capture_stderr=True, check=False,
        )  # fmt: skip


async def test_body_to_stdout_whose_reader_goes_away_is_an_error() -> None:
    # Before: exit 0 and nothing on stderr, the body lost without a word.
    async with trio.open_nursery() as nursery:
        server = await nursery.start(partial(serve_http, big))
        result = await piped("head -c 10 >/dev/null", "get", "-s", "-o", "-", server.url("/"))
        nursery.cancel_scope.cancel()
    err = one_line_error(result)
    assert result.returncode == 1, err
    assert "-o -: stdout was closed before the whole body was written" in err
    assert "Broken pipe" not in err
    assert "Exception ignored" not in err


async def test_report_to_stdout_whose_reader_goes_away_stays_quiet() -> None:
    # Without -o -, stdout has the report only: a reader gone (``| true``) is a quiet 0.
    async with trio.open_nursery() as nursery:
        server = await nursery.start(partial(serve_http, big))
        result = await piped("true", "get", server.url("/"))
        nursery.cancel_scope.cancel()
    assert result.returncode == 0, result.stderr
    assert result.stderr == b""


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("setpriv") is None,
                    reason="needs root and setpriv to run as nobody")  # fmt: skip
async def test_output_in_a_read_only_directory_names_the_directory() -> None:
    with tempfile.TemporaryDirectory() as top:
        directory = Path(top) / "ro"
        directory.mkdir()
        (directory / "f").write_bytes(b"old")
        os.chmod(top, 0o755)
        os.chmod(directory, 0o555)
        nobody = ["setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups"]
        result = await trio.run_process(
            [*nobody, *CLI, "get", "-o", str(directory / "f"), f"http://127.0.0.1:{REFUSED}/"],
            capture_stderr=True, check=False, env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
        )  # fmt: skip
        err = one_line_error(result)
        assert f"the directory {directory} is not writable" in err
        assert (directory / "f").read_bytes() == b"old"


# -- the user's own bad URL is a usage mistake (exit 2); a redirect's is not --------------


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("htp://x/", "only http and https"),
        ("ftp://127.0.0.1/", "only http and https"),
        ("http://[::1", "malformed URL"),
        (f"http://user:pw@127.0.0.1:{REFUSED}/", "credentials in the URL"),
    ],
)
async def test_a_bad_url_of_ones_own_is_a_usage_error(url: str, words: str) -> None:
    result = await trio.run_process([*CLI, "get", url], capture_stdout=True,
                                    capture_stderr=True, check=False)  # fmt: skip
    err = one_line_error(result)
    assert result.returncode == 2, err
    assert words in err
    assert "pw" not in err.replace(url, "")  # nothing beyond the URL as typed
    assert result.stdout == b""


async def test_a_port_with_leading_zeros_is_that_port() -> None:
    # Before: "bad port '0<port>'", exit 2; RFC 3986 has port = *DIGIT, and curl agrees.
    async with trio.open_nursery() as nursery:
        server = await nursery.start(serve_http)
        url = f"http://127.0.0.1:0{server.port}/zero"
        result = await trio.run_process([*CLI, "get", url], capture_stdout=True,
                                        capture_stderr=True, check=False)  # fmt: skip
        nursery.cancel_scope.cancel()
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(b"status => HTTP/1.1 200 OK")
    assert server.requests[0].target == "/zero"


async def test_an_ipv6_zone_id_is_refused_in_words() -> None:
    # Before: sent to the resolver as "::1%25lo": "Name or service not known", exit 1.
    command = [*CLI, "get", f"http://[::1%25lo]:{REFUSED}/"]
    result = await trio.run_process(command, capture_stdout=True, capture_stderr=True,
                                    check=False)  # fmt: skip
    err = one_line_error(result)
    assert result.returncode == 2, err
    assert "InvalidURL: IPv6 zone IDs are not supported" in err


def bad_location(request: ServerRequest) -> tuple[int, list[tuple[str, str]], bytes]:
    return 302, [("location", "htp://elsewhere/")], b""


async def test_a_redirect_to_a_bad_url_is_a_runtime_failure() -> None:
    async with trio.open_nursery() as nursery:
        server = await nursery.start(partial(serve_http, bad_location))
        command = [*CLI, "get", server.url("/")]
        result = await trio.run_process(command, capture_stdout=True, capture_stderr=True,
                                        check=False)  # fmt: skip
        nursery.cancel_scope.cancel()
    err = result.stderr.decode()
    assert result.returncode == 1, err
    assert "cannot follow the 302" in err


async def test_monitor_counts_one_source_in_the_singular() -> None:
    pytest.importorskip("prometheus_client")
    proc = await trio.lowlevel.open_process(
        [*CLI, "monitor", f"127.0.0.1:{REFUSED}", "--metrics-port", "0", "--interval", "30"],
        stderr=subprocess.PIPE,
    )
    assert proc.stderr is not None
    seen = b""
    try:
        with trio.fail_after(60):
            while b" every 30 s, metrics at" not in seen:
                chunk = await proc.stderr.receive_some()
                assert chunk, seen
                seen += chunk
    finally:
        proc.terminate()
        with trio.fail_after(60):
            await proc.wait()
    assert b"monitor: 1 source every 30 s, metrics at http://127.0.0.1:" in seen


# -- a forward proxy's bad reply is the proxy's, not the origin's ------------------------------


async def test_a_forward_proxys_junk_names_the_proxy_without_credentials() -> None:
    async def junk(stream: trio.SocketStream) -> None:
        await stream.receive_some()
        await stream.send_all(b"HTTP/1.1 2x0 junk\r\n\r\n")
        await stream.aclose()

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(partial(trio.serve_tcp, junk, 0, host="127.0.0.1"))
        port = listeners[0].socket.getsockname()[1]
        command = [*CLI, "get", "--proxy", f"http://u:Zq-secret@127.0.0.1:{port}",
                   f"http://127.0.0.1:{REFUSED}/x"]  # fmt: skip
        with trio.fail_after(60):
            result = await trio.run_process(command, capture_stdout=True, capture_stderr=True,
                                            check=False)  # fmt: skip
        nursery.cancel_scope.cancel()
    err = one_line_error(result)
    assert result.returncode == 1
    assert (
        f"the proxy 127.0.0.1:{port} (for 127.0.0.1:{REFUSED}) sent a malformed response head"
        in err
    )
    assert "Zq-secret" not in err
    assert err.count("(") == err.count(")"), err
