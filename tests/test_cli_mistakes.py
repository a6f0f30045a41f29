"""Command lines that can never work are usage errors: exit 2, one line, no network.

Each runs as a real subprocess against a real loopback server that counts its
connections: a mistake found when the arguments are parsed never reaches it.
(Before: ``--proxy ''``/``ftp://``/``https://`` and a CR/LF in ``-H`` were
runtime failures, exit 1, after trying; ``monitor --proxy ftp://x`` failed
every round forever; ``-o ''`` sent the request, then failed on a directory.)
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import trio

from helpers import serve_http

CLI = [sys.executable, "-m", "trio_timehttp"]


async def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[bytes]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(map(os.path.abspath, sys.path))}
    with trio.fail_after(30):  # monitor failing every round would run forever
        return await trio.run_process([*CLI, *args], cwd=cwd, env=env, capture_stdout=True,
                                      capture_stderr=True, check=False)  # fmt: skip


def usage_error(result: subprocess.CompletedProcess[bytes], command: str) -> str:
    """The one stderr line of a usage mistake of ``command`` (exit 2, pointing to its help)."""
    err = result.stderr.decode()
    assert result.returncode == 2, err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err
    assert err.startswith(f"trio-timehttp {command}: error: "), err
    assert err.rstrip().endswith(f"(see trio-timehttp {command} --help)"), err
    return err


@pytest.fixture
async def server(nursery: trio.Nursery) -> Any:
    return await nursery.start(serve_http)


PROXY_MISTAKES = [
    ("", "argument --proxy: no host in proxy URL ''"),
    ("ftp://x", "argument --proxy: only http:// proxies are supported, not 'ftp://x'"),
    ("https://127.0.0.1:3128", "only http:// proxies are supported, not 'https://127.0.0.1:3128'"),
    ("socks5://127.0.0.1:1080", "SOCKS proxies are not supported"),
    ("http://127.0.0.1:99999", "bad proxy URL"),
]


@pytest.mark.parametrize(("proxy", "message"), PROXY_MISTAKES)
@pytest.mark.parametrize("command", ["get", "time", "monitor"])
async def test_a_proxy_that_can_never_work_is_a_usage_error(
    server: Any, command: str, proxy: str, message: str
) -> None:
    extra = ["--metrics-port", "0"] if command == "monitor" else []
    result = await run_cli(command, *extra, "--proxy", proxy, server.url("/"))
    assert message in usage_error(result, command)
    assert server.connections == 0
    assert result.stdout == b""


async def test_proxy_credentials_stay_out_of_the_usage_error(server: Any) -> None:
    result = await run_cli("get", "--proxy", "ftp://user:hunter2@x", server.url("/"))
    err = usage_error(result, "get")
    assert "'ftp://***@x'" in err
    assert "hunter2" not in err


@pytest.mark.parametrize(
    ("header", "message"),
    [
        ("X: a\r\nY: b", "a header value cannot hold CR, LF or other control characters"),
        ("X: a\nb", "a header value cannot hold CR, LF"),
        ("X: a\x1bb", "a header value cannot hold CR, LF"),
        ("X(: b", "not a header name (a token): 'X('"),
        ("X Y: b", "not a header name"),
        ("X: \u20ac", "a header value can only hold Latin-1 characters"),
    ],
)
async def test_a_header_that_can_never_be_sent_is_a_usage_error(
    server: Any, header: str, message: str
) -> None:
    result = await run_cli("get", server.url("/"), "-H", header)
    err = usage_error(result, "get")
    assert f"argument -H/--header: {message}" in err
    assert "\r" not in err
    assert server.connections == 0


async def test_headers_that_can_be_sent_still_are(server: Any) -> None:
    result = await run_cli("get", server.url("/"), "-H", "X-Tab: a\tb", "-H", "X-Latin: caf\xe9",
                           "-H", "X-Empty:")  # fmt: skip
    assert result.returncode == 0, result.stderr
    seen = server.requests[0]
    assert seen.header("x-tab") == "a\tb"
    assert seen.header("x-latin") == "caf\xe9"
    assert seen.header("x-empty") == ""


async def test_an_empty_output_file_name_is_a_usage_error(server: Any, tmp_path: Path) -> None:
    result = await run_cli("get", server.url("/"), "-o", "", cwd=tmp_path)
    err = usage_error(result, "get")
    assert "argument -o/--output: FILE is empty: give a file name, or '-' for stdout" in err
    assert server.connections == 0
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("command", ["time", "monitor"])
@pytest.mark.parametrize("source", ["bad\x1bhost", "bad host", "bad\x9bhost:37", "tab\there"])
async def test_a_host_source_with_control_characters_is_a_usage_error(
    command: str, source: str
) -> None:
    extra = ["--metrics-port", "0"] if command == "monitor" else []
    result = await run_cli(command, *extra, source)
    err = usage_error(result, command)
    assert "can never be read: control characters or spaces in a host name" in err
    assert "\x1b" not in err
    assert "\x9b" not in err


@pytest.mark.parametrize(
    ("links", "output", "words"),
    [
        ([("dangling", "nowhere/x")], "dangling",
         "no such directory nowhere (the symlink dangling points to nowhere/x)"),
        ([("dangling", "nowhere/x"), ("chain", "dangling")], "chain",
         "no such directory nowhere (the symlink chain points to nowhere/x)"),
        ([("sub/link", "../gone/deeper/x")], "sub/link",
         "no such directory gone/deeper (the symlink sub/link points to gone/deeper/x)"),
    ],
)  # fmt: skip
async def test_a_dangling_symlink_names_the_directory_it_lacks(
    server: Any, tmp_path: Path, links: list[tuple[str, str]], output: str, words: str
) -> None:
    # Before: "cannot write dangling: no such directory ." (the link's own directory).
    (tmp_path / "sub").mkdir()
    for name, target in links:
        os.symlink(target, tmp_path / name)
    result = await run_cli("get", server.url("/"), "-o", output, cwd=tmp_path)
    err = usage_error(result, "get")
    assert f"cannot write {output}: {words}" in err
    assert server.connections == 0
    for name, target in links:
        assert os.readlink(tmp_path / name) == target  # left as it was


@pytest.mark.parametrize(
    "args",
    [
        ["get", "-X", "G\x1b]0;pwn\x07"],  # our own check's message quotes it
        ["get", "--\x1b[2J"],  # argparse's "unrecognized arguments" quotes it
        ["get", "-X", "GET\r\n"],
    ],
)
async def test_what_was_typed_is_escaped_in_a_usage_error(server: Any, args: list[str]) -> None:
    result = await run_cli(*args, server.url("/"))
    err = usage_error(result, "get")
    assert "\x1b" not in err
    assert "\x07" not in err
    assert "\r" not in err
    assert server.requests == []


async def test_an_absurd_value_is_quoted_short(server: Any) -> None:
    url = "http://127.0.0.1:" + "9" * 5000 + "/"
    err = usage_error(await run_cli("get", url), "get")
    assert len(err) < 500
    assert "more characters" in err


@pytest.mark.parametrize("source", ["[fe80::1%lo]:37", "fe80::1%lo", "[fe80::1%25lo]:37"])
async def test_a_zone_id_in_a_time_source_is_a_usage_error(source: str) -> None:
    err = usage_error(await run_cli("time", "--timeout", "2", source), "time")
    assert "IPv6 zone IDs are not supported" in err
