"""What the command line prints from a server cannot drive the user's terminal.

Status, reason, header names and values, ``-v`` heads, error lines, ``time``'s
lines and log lines go through ``printable``: every control character (C0,
tab and newline too, DEL, C1, bidirectional overrides, lone surrogates) is
shown as an escape. Real subprocesses against real hostile servers.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import unicodedata
from typing import Any

import pytest
import trio
from hypothesis import given
from hypothesis import strategies as st

from trio_timehttp._cli_args import printable

from helpers import serve_evil

CLI = [sys.executable, "-m", "trio_timehttp"]
# Anything but a newline ending a line that a terminal would act on.
CONTROL = re.compile(rb"[\x00-\x09\x0b-\x1f\x7f]|\xc2[\x80-\x9f]|\xe2\x80[\x8e\x8f\xa8-\xae]")


async def run_cli(*args: str) -> subprocess.CompletedProcess[bytes]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    with trio.fail_after(60):
        return await trio.run_process(
            [*CLI, *args], capture_stdout=True, capture_stderr=True, check=False, env=env
        )


def assert_inert(result: subprocess.CompletedProcess[bytes]) -> None:
    for stream in (result.stdout, result.stderr):
        assert CONTROL.search(stream) is None, stream
    assert b"Traceback" not in result.stderr


# -- the rule, pure --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("\x1b]0;pwned\x07\x1b[2J", "\\x1b]0;pwned\\x07\\x1b[2J"),
        ("\x1b[31mOK", "\\x1b[31mOK"),
        ("a\tb\r\nc", "a\\tb\\r\\nc"),
        ("\x00\x7f\x9b", "\\x00\\x7f\\x9b"),
        ("evil\u202etxt.exe\u2066\u2028", "evil\\u202etxt.exe\\u2066\\u2028"),
        ("bytes \udcff", "bytes \\udcff"),
        ("plain text, café, 東京, 😀 \\x1b", "plain text, café, 東京, 😀 \\x1b"),
        ("", ""),
    ],
)
def test_control_characters_become_escapes(text: str, shown: str) -> None:
    assert printable(text) == shown


@given(st.text())
def test_nothing_a_terminal_acts_on_is_left(text: str) -> None:
    shown = printable(text)
    assert not any(unicodedata.category(c) in ("Cc", "Cs", "Zl", "Zp") for c in shown)
    assert not any(c in shown for c in "\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2069")
    assert shown.encode("utf-8").decode("utf-8") == shown  # no lone surrogate: stdout encodes it


@given(st.text(st.characters(blacklist_categories=("Cc", "Cs", "Cf", "Zl", "Zp"))))
def test_printable_text_is_left_as_it_is(text: str) -> None:
    assert printable(text) == text


# -- get -------------------------------------------------------------------------------------

HOSTILE_HEADS = [
    b"HTTP/1.1 200 OK\r\nX-Evil: \x1b]0;pwned\x07\x1b[2J\r\nContent-Length: 0\r\n\r\n",
    b"HTTP/1.1 200 \x1b[31mOK\r\nContent-Length: 0\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nX-Tab: a\tb\r\nX-C1: \x9b31m\x85\r\nContent-Length: 0\r\n\r\n",
    b"HTTP/1.1 404 \x1b[2JNot\x07Found\r\nContent-Length: 0\r\n\r\n",
]


@pytest.mark.parametrize("head", HOSTILE_HEADS)
@pytest.mark.parametrize("flags", [[], ["-v"], ["-f"], ["-f", "-v", "--no-redirects"]])
async def test_get_prints_a_hostile_head_inert(
    nursery: trio.Nursery, head: bytes, flags: list[str]
) -> None:
    evil = await nursery.start(serve_evil, [("recv",), ("send", head), ("close",)])
    result = await run_cli("get", evil.url("/"), *flags)
    assert_inert(result)
    shown = result.stdout + result.stderr
    assert b"\\x1b" in shown or b"\\t" in shown  # the truth, escaped, not dropped
    status = int(head.split()[1])
    assert result.returncode == (22 if "-f" in flags and status >= 400 else 0)


async def test_a_redirect_chain_with_hostile_heads_is_inert(nursery: trio.Nursery) -> None:
    async def script(conn: Any) -> None:
        await conn.recv_request()
        await conn.send(b"HTTP/1.1 302 \x1b[5mMoved\r\nLocation: /next\r\nX-E: \x07\r\n")
        await conn.send(b"Content-Length: 0\r\n\r\n")
        await conn.recv_request()
        await conn.send(b"HTTP/1.1 200 OK\x1b[0m\r\nContent-Length: 2\r\n\r\nok")
        await conn.recv_request()  # until the client goes

    evil = await nursery.start(serve_evil, script)
    result = await run_cli("get", "-v", evil.url("/"))
    assert result.returncode == 0, result.stderr
    assert_inert(result)
    assert b"status => HTTP/1.1 200 OK\\x1b[0m" in result.stdout
    assert b"< HTTP/1.1 302 \\x1b[5mMoved" in result.stderr


# -- time and the log -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("flags", "escaped"),
    [
        ([], b"\\x1b"),
        (["--json"], b"\\u001b"),  # JSON's own escape
        (["--warn", "1", "--crit", "2"], None),  # the plugin line names no error text
        (["--count", "2", "--interval", "0.1"], None),  # nor does a watch line
    ],
)
@pytest.mark.parametrize("source", ["exa\x1b[2Jmple.invalid:37", "http://exa\x1bmple.invalid/"])
async def test_time_lines_are_inert(source: str, flags: list[str], escaped: bytes | None) -> None:
    result = await run_cli("time", source, *flags, "--timeout", "5")
    assert result.returncode != 0
    assert_inert(result)
    if escaped is not None:  # shown escaped: in the report, or in a usage error (stderr)
        assert escaped in result.stdout or b"\\x1b" in result.stderr


@pytest.mark.parametrize("command", ["serve", "monitor"])
def test_log_lines_are_inert_and_a_traceback_keeps_its_lines(command: str) -> None:
    code = (
        "import logging\n"
        "from trio_timehttp._cli import _setup_logging\n"
        f"_setup_logging(0, {command!r})\n"
        "log = logging.getLogger('trio_timehttp.test')\n"
        "log.info('from %s: %s', 'server', '\\x1b]0;pwned\\x07')\n"
        "try:\n"
        "    raise ValueError('inner')\n"
        "except ValueError:\n"
        "    log.exception('failed \\x1b[2J')\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, env=env, timeout=60, check=True
    )
    err = result.stderr.decode()
    assert "\x1b" not in err
    assert " INFO from server: \\x1b]0;pwned\\x07\n" in err  # the services log at INFO by default
    assert " ERROR failed \\x1b[2J\nTraceback (most recent call last):\n" in err
    assert err.rstrip().endswith("ValueError: inner")


@pytest.mark.parametrize(("command", "level"), [("time", "WARNING"), ("get", "WARNING")])
def test_the_clients_log_warnings_only_by_default(command: str, level: str) -> None:
    code = (
        "import logging\n"
        "from trio_timehttp._cli import _setup_logging\n"
        f"_setup_logging(0, {command!r})\n"
        "print(logging.getLevelName(logging.getLogger().level))\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, env=env, timeout=60, check=True
    )
    assert result.stdout.decode().strip() == level
