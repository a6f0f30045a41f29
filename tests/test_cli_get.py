"""``trio-timehttp get`` as a user runs it: a real subprocess against real local servers.

Real files (a FIFO with a reader, /dev/null, symlinks, a directory, places
``nobody`` may not write), real signals (SIGINT, SIGTERM, and Ctrl-C typed
at a pseudo-terminal), a 40-column terminal for the progress line.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import ssl
import stat
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import trio
from ptyutil import Terminal, finish

from helpers import ServerRequest, serve_evil, serve_http

CLI = [sys.executable, "-m", "trio_timehttp"]


async def run_cli(
    *args: str, cwd: Path | None = None, stdin: bytes = b"", nobody: bool = False
) -> subprocess.CompletedProcess[bytes]:
    command = [*CLI, *args]
    if nobody and os.geteuid() == 0:
        command = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", *command]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    with trio.fail_after(60):
        return await trio.run_process(
            command, cwd=cwd, stdin=stdin, capture_stdout=True, capture_stderr=True,
            check=False, env=env,
        )  # fmt: skip


def no_traceback(result: subprocess.CompletedProcess[bytes]) -> str:
    err = result.stderr.decode()
    assert "Traceback" not in err, err
    return err


def one_line(result: subprocess.CompletedProcess[bytes]) -> str:
    err = no_traceback(result)
    assert len(err.strip().splitlines()) == 1, err
    return err


BODY = bytes(range(256)) * 40  # 10240 bytes


def site(request: ServerRequest) -> Any:
    if request.target == "/old":
        return 302, [("location", "/file.bin")], b""
    if request.target == "/missing":
        return 404, [("content-type", "text/plain")], b"no such thing\n"
    if request.target == "/echo":
        lines = [f"{request.method} {request.target}", *(f"{k}: {v}" for k, v in request.headers)]
        return (
            200,
            [("set-cookie", "sid=s3cret; Path=/")],
            "\n".join(lines).encode() + (b"\n\n" + request.body),
        )
    return 200, [("content-type", "application/octet-stream")], BODY


@pytest.fixture
async def server(nursery: trio.Nursery) -> Any:
    return await nursery.start(serve_http, site)


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory ``nobody`` can enter (pytest's tmp_path is private to root)."""
    path = Path(tempfile.mkdtemp(prefix="trio-timehttp-cli-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        for p in path.iterdir():
            if not p.is_symlink():
                p.chmod(0o700)
        shutil.rmtree(path)


# -- the default output, unchanged -----------------------------------------------------------


async def test_default_output_is_the_seed_report(server: Any) -> None:
    result = await run_cli("get", server.url("/old"))
    assert result.returncode == 0
    assert result.stdout.decode().splitlines() == [
        f"redirecting to {server.url('/file.bin')} ...",
        "status => HTTP/1.1 200 OK",
        "content-type = application/octet-stream",
        "content-length = 10240",
        "10240 bytes in body",
    ]
    assert result.stderr == b""


# -- the truth on stdout, the error on stderr ------------------------------------------------


async def test_refused_is_a_failed_connection_in_words(refused_port: int) -> None:
    result = await run_cli("get", f"http://127.0.0.1:{refused_port}/")
    assert result.returncode == 1
    assert result.stdout == b"connection failed\n"  # the seed's line, and only that
    err = one_line(result)
    assert err.startswith("trio-timehttp: error: ConnectError: ")
    assert "connection refused" in err
    assert "('127.0.0.1'" not in err
    assert "[Errno" not in err


@pytest.mark.parametrize(
    ("script", "kind", "words"),
    [
        ([("recv",), ("forever",)], "Timeout", "timed out after 0.5 s"),
        ([("recv",), ("send", b"HTTP/1.1 2x0 OK\r\n\r\n")], "ProtocolError", '"HTTP/1.1 2x0 OK"'),
        (
            [("recv",), ("send", b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n12345")],
            "ProtocolError",
            "",
        ),
        (
            [
                ("recv",),
                ("send", b"HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\nabc"),
                ("forever",),
            ],
            "Timeout",
            "timed out",
        ),
    ],
    ids=["timeout-before-head", "malformed-status", "truncated-body", "timeout-mid-body"],
)
async def test_failures_print_what_happened(
    nursery: trio.Nursery, script: list[Any], kind: str, words: str
) -> None:
    evil = await nursery.start(serve_evil, script)
    result = await run_cli("get", evil.url("/"), "--timeout", "0.5")
    assert result.returncode == 1
    out = result.stdout.decode()
    assert "connection failed" not in out
    assert "bytes in body" not in out  # the body was not complete: no count
    err = one_line(result)
    assert f"error: {kind}: " in err
    assert words in err
    assert "bytearray" not in err
    assert "b'" not in err


async def test_a_redirect_loop_is_named(nursery: trio.Nursery) -> None:
    loop = await nursery.start(serve_http, lambda r: (302, [("location", "/again")], b""))
    result = await run_cli("get", loop.url("/again"))
    assert result.returncode == 1
    assert "connection failed" not in result.stdout.decode()
    assert "bytes in body" not in result.stdout.decode()
    assert "TooManyRedirects: more than 10 redirects" in one_line(result)


async def test_a_bad_url_never_says_bytes_in_body() -> None:
    result = await run_cli("get", "htp://x/")
    assert result.returncode == 2  # the user's own URL: a usage mistake
    assert result.stdout == b""
    assert "InvalidURL: " in one_line(result)


# -- -o: what is at PATH is never destroyed --------------------------------------------------


async def test_output_to_a_new_file(server: Any, tmp_path: Path) -> None:
    target = tmp_path / "body.bin"
    result = await run_cli("get", server.url("/"), "-o", str(target))
    assert result.returncode == 0
    assert target.read_bytes() == BODY
    assert os.listdir(tmp_path) == ["body.bin"]
    assert result.stdout.decode().splitlines()[-1] == "10240 bytes in body"


async def test_output_to_dev_null_keeps_the_device(server: Any) -> None:
    before = os.stat("/dev/null")
    result = await run_cli("get", server.url("/"), "-o", "/dev/null")
    assert result.returncode == 0, result.stderr
    after = os.stat("/dev/null")
    assert stat.S_ISCHR(after.st_mode)
    assert (after.st_ino, after.st_rdev) == (before.st_ino, before.st_rdev)


async def test_output_to_a_fifo_writes_through_to_its_reader(server: Any, tmp_path: Path) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with trio.fail_after(60):
        reader = await trio.lowlevel.open_process(["cat", str(fifo)], stdout=subprocess.PIPE)
        result = await run_cli("get", server.url("/"), "-o", str(fifo))
        assert reader.stdout is not None
        got = b""
        while chunk := await reader.stdout.receive_some():
            got += chunk
        assert await reader.wait() == 0
    assert result.returncode == 0, result.stderr
    assert got == BODY
    assert stat.S_ISFIFO(fifo.stat().st_mode)
    assert os.listdir(tmp_path) == ["pipe"]


async def test_output_through_a_symlink_keeps_the_link(server: Any, tmp_path: Path) -> None:
    real = tmp_path / "real.bin"
    real.write_bytes(b"old")
    link = tmp_path / "link"
    link.symlink_to(real)
    result = await run_cli("get", server.url("/"), "-o", str(link))
    assert result.returncode == 0
    assert link.is_symlink()
    assert real.read_bytes() == BODY
    assert sorted(os.listdir(tmp_path)) == ["link", "real.bin"]


async def test_output_to_a_directory_is_refused_before_the_request(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    quiet = await nursery.start(serve_http, site)
    result = await run_cli("get", quiet.url("/"), "-o", str(tmp_path))
    assert result.returncode == 2
    err = one_line(result)
    assert f"cannot write {tmp_path}: Is a directory" in err
    assert "(see trio-timehttp get --help)" in err
    assert quiet.connections == 0
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("what", ["unwritable-directory", "read-only-file"])
async def test_unwritable_places_are_refused_naming_the_path(
    nursery: trio.Nursery, shared_dir: Path, what: str
) -> None:
    """As nobody (via setpriv when root): the user's path in the message, no request made."""
    quiet = await nursery.start(serve_http, site)
    place = shared_dir / "place"
    place.mkdir()
    target = place / "out.bin"
    if what == "read-only-file":
        place.chmod(0o777)
        target.write_bytes(b"keep")
        target.chmod(0o444)
    elif os.geteuid() != 0:
        place.chmod(0o555)
    result = await run_cli("get", quiet.url("/"), "-o", str(target), nobody=True)
    assert result.returncode == 2
    err = one_line(result)
    assert f"cannot write {target}: Permission denied" in err
    assert ".part" not in err
    assert quiet.connections == 0
    if what == "read-only-file":
        assert target.read_bytes() == b"keep"
        assert os.listdir(place) == ["out.bin"]
    else:
        assert os.listdir(place) == []


async def test_output_to_stdout(server: Any) -> None:
    result = await run_cli("get", server.url("/"), "-o", "-")
    assert result.returncode == 0
    assert result.stdout == BODY  # the body only: no report mixed in
    assert result.stderr == b""


@pytest.mark.parametrize("redirect", [">>", "|"])
async def test_output_to_dev_stdout_appends_or_pipes(
    server: Any, tmp_path: Path, redirect: str
) -> None:
    """``-o /dev/stdout >> log`` appends (never replaces the log); into a pipe it pipes."""
    log = tmp_path / "log"
    log.write_bytes(b"previous\n")
    sink = f">> '{log}'" if redirect == ">>" else f"| cat >> '{log}'"
    command = f"set -o pipefail; {' '.join(CLI)} get -s -o /dev/stdout {server.url('/')} {sink}"
    with trio.fail_after(60):
        result = await trio.run_process(["bash", "-c", command], capture_stderr=True, check=False)
    assert result.returncode == 0, result.stderr
    assert log.read_bytes() == b"previous\n" + BODY
    assert os.listdir(tmp_path) == ["log"]


async def test_remote_name(server: Any, tmp_path: Path) -> None:
    result = await run_cli("get", "-O", server.url("/dir/my%20file.bin?x=1"), cwd=tmp_path)
    assert result.returncode == 0
    assert (tmp_path / "my file.bin").read_bytes() == BODY


@pytest.mark.parametrize(
    "path", ["/", "/dir/..%2F..%2Fescape", "/a/%2e%2e", "/a/b%00c", "/a/%FF", "/a/x%5Cy"]
)
async def test_remote_name_refuses_names_that_escape(
    nursery: trio.Nursery, tmp_path: Path, path: str
) -> None:
    quiet = await nursery.start(serve_http, site)
    result = await run_cli("get", "-O", quiet.url(path), cwd=tmp_path)
    assert result.returncode == 2
    assert "-O: no usable file name" in one_line(result)
    assert quiet.connections == 0
    assert os.listdir(tmp_path) == []


# -- interrupted downloads leave nothing behind ----------------------------------------------


def slow_body(framing: str) -> list[Any]:
    """A head and 100 kB of body (more than FileConsumer's buffer), then nothing more."""
    part = b"p" * 100_000
    if framing == "chunked":
        head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        data = f"{len(part):x}\r\n".encode() + part + b"\r\n"
    elif framing == "until-close":
        head, data = b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n", part
    else:
        head, data = b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n", part
    return [("recv",), ("send", head + data), ("forever",)]


def has_partial(directory: Path) -> bool:
    return any(p.name.endswith(".part") and p.stat().st_size > 0 for p in directory.iterdir())


async def wait_for_partial(directory: Path) -> None:
    """Until the temporary file holds body bytes: a bounded poll on another process."""
    with trio.fail_after(30):
        while not has_partial(directory):  # noqa: ASYNC110 - no event crosses processes
            await trio.sleep(0.02)


@pytest.mark.parametrize("framing", ["chunked", "until-close", "content-length"])
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
async def test_a_signal_mid_download_leaves_nothing(
    nursery: trio.Nursery, tmp_path: Path, framing: str, signum: int
) -> None:
    evil = await nursery.start(serve_evil, slow_body(framing))
    target = tmp_path / "out.bin"
    proc = await trio.lowlevel.open_process(
        [*CLI, "get", evil.url("/"), "-o", str(target)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        await wait_for_partial(tmp_path)
        proc.send_signal(signum)
        status = await finish(proc)
        assert proc.stderr is not None
        err = (await proc.stderr.receive_some()).decode()
    finally:
        if proc.returncode is None:
            proc.kill()
        for pipe in (proc.stdout, proc.stderr):
            if pipe is not None:
                await pipe.aclose()
    if signum == signal.SIGINT:
        assert (status, err) == (130, "trio-timehttp: interrupted\n")
    else:
        assert (status, err) == (143, "trio-timehttp: terminated\n")
    assert os.listdir(tmp_path) == []


async def test_ctrl_c_at_a_terminal_mid_download(nursery: trio.Nursery, tmp_path: Path) -> None:
    """^C typed at the terminal (the kernel's SIGINT to the foreground group), bar showing."""
    evil = await nursery.start(serve_evil, slow_body("content-length"))
    target = tmp_path / "out.bin"
    term = Terminal(columns=40)
    proc = await term.start([*CLI, "get", evil.url("/"), "-o", str(target)])
    try:
        await term.read_until(b"% ")  # the progress line: the body is arriving
        term.ctrl_c()
        assert await finish(proc) == 130
        out = await term.read_to_end()
    finally:
        await finish(proc)
        term.close()
    assert b"trio-timehttp: interrupted" in out
    assert b"Traceback" not in out
    assert os.listdir(tmp_path) == []


# -- the progress line -----------------------------------------------------------------------


async def dripping(request: ServerRequest) -> Any:
    async def body() -> AsyncIterator[bytes]:
        for _ in range(25):
            yield b"d" * 4000
            await trio.sleep(0.04)  # the server's pace: a download that takes a second

    return 200, [("content-length", str(25 * 4000))], body()


@pytest.mark.parametrize("columns", [40, 120])
async def test_progress_fits_the_terminal_and_shows_rate_and_eta(
    nursery: trio.Nursery, tmp_path: Path, columns: int
) -> None:
    slow = await nursery.start(serve_http, dripping)
    target = tmp_path / "out.bin"
    term = Terminal(columns=columns)
    proc = await term.start(
        [*CLI, "get", slow.url("/"), "-o", str(target)], stdout=subprocess.DEVNULL
    )
    try:
        out = (await term.read_to_end()).decode()
        assert await finish(proc) == 0
    finally:
        await finish(proc)
        term.close()
    assert target.stat().st_size == 100_000
    lines = out.replace("\r\n", "\n").split("\n")
    assert lines[-1] == ""
    assert len(lines) == 2, out  # one line, redrawn in place, then its newline
    draws = [d for d in lines[0].split("\r") if d]
    assert len(draws) >= 3
    assert all(len(d) <= columns - 1 for d in draws), draws
    assert any(re.search(r"\d+(\.\d)? (B|KiB|MiB)/s", d) for d in draws)
    assert any("ETA " in d for d in draws[:-1])
    assert "100%" in draws[-1]
    if columns >= 80:
        assert draws[-1].startswith("[" + "#" * 10)


async def test_silent_has_no_progress_and_no_report(server: Any, tmp_path: Path) -> None:
    target = tmp_path / "out.bin"
    term = Terminal(columns=80)
    proc = await term.start([*CLI, "get", "-s", server.url("/"), "-o", str(target)])
    try:
        out = await term.read_to_end()
        assert await finish(proc) == 0
    finally:
        await finish(proc)
        term.close()
    assert out == b""
    assert target.read_bytes() == BODY


async def test_timeout_zero_means_no_deadline(nursery: trio.Nursery) -> None:
    async def late(request: ServerRequest) -> Any:
        await trio.sleep(1.0)  # slower than the short deadline below
        return 200, [], b"late"

    slow = await nursery.start(serve_http, late)
    short = await run_cli("get", slow.url("/"), "--timeout", "0.3")
    assert short.returncode == 1
    assert "Timeout" in one_line(short)
    none = await run_cli("get", slow.url("/"), "--timeout", "0")
    assert none.returncode == 0, none.stderr
    assert none.stdout.decode().endswith("4 bytes in body\n")


# -- the curl flags --------------------------------------------------------------------------


async def test_fail_exits_22_and_saves_nothing(server: Any, tmp_path: Path) -> None:
    target = tmp_path / "out"
    result = await run_cli("get", "-f", server.url("/missing"), "-o", str(target))
    assert result.returncode == 22
    assert "HTTP 404 Not Found from" in one_line(result)
    assert "bytes in body" not in result.stdout.decode()
    assert os.listdir(tmp_path) == []
    ok = await run_cli("get", "-f", server.url("/"))
    assert ok.returncode == 0
    without = await run_cli("get", server.url("/missing"))
    assert without.returncode == 0  # status codes are data unless -f


async def test_head(server: Any) -> None:
    result = await run_cli("get", "-I", server.url("/"))
    assert result.returncode == 0
    assert server.requests[-1].method == "HEAD"
    lines = result.stdout.decode().splitlines()
    assert lines[0] == "status => HTTP/1.1 200 OK"
    assert lines[-1] == "0 bytes in body"


async def test_method_and_data(server: Any, tmp_path: Path) -> None:
    form = tmp_path / "form"
    form.write_bytes(b"c=3\r\nd=4\n")
    result = await run_cli("get", "-d", "a=1", "-d", f"@{form}", "-d", "@-", server.url("/echo"),
                           stdin=b"e=5\n")  # fmt: skip
    assert result.returncode == 0, result.stderr
    request = server.requests[-1]
    assert request.method == "POST"
    assert request.body == b"a=1&c=3d=4&e=5"  # as curl: newlines dropped from @FILE
    assert request.header("content-type") == "application/x-www-form-urlencoded"
    put = await run_cli("get", "-X", "PUT", "-d", "x", "-H", "Content-Type: text/plain",
                        server.url("/echo"))  # fmt: skip
    assert put.returncode == 0
    assert server.requests[-1].method == "PUT"
    assert server.requests[-1].header("content-type") == "text/plain"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-X", "GE T"], "not an HTTP method"),
        (["-I", "-d", "x"], "-I/--head sends HEAD"),
        (["-I", "-o", "f"], "no body to write"),
        (["-d", "@/nonexistent/file"], "-d @/nonexistent/file: No such file"),
        (["--cacert", "/nonexistent/ca.pem"], "--cacert /nonexistent/ca.pem: no such file"),
        (["-o", "f", "-O"], "not allowed with argument"),
    ],
)
async def test_flag_mistakes_point_to_get_help(
    args: list[str], message: str, refused_port: int
) -> None:
    result = await run_cli("get", f"http://127.0.0.1:{refused_port}/x", *args)
    assert result.returncode == 2
    err = one_line(result)
    assert message in err
    assert err.rstrip().endswith("(see trio-timehttp get --help)")


async def test_verbose_shows_heads_on_stderr_masked(server: Any) -> None:
    secrets = ["-H", "Authorization: Basic dXNlcjpwdw==", "-H", "Cookie: a=1; b=2"]
    plain = await run_cli("get", server.url("/echo"), *secrets)
    result = await run_cli("get", "-v", server.url("/echo"), *secrets)
    assert result.returncode == 0
    assert result.stdout == plain.stdout  # stdout is the same report with or without -v
    err = result.stderr.decode()
    assert "> GET /echo HTTP/1.1" in err
    assert f"> host: 127.0.0.1:{server.port}" in err  # as sent
    assert "> authorization: Basic ***" in err
    assert "> cookie: a=***; b=***" in err
    assert "< HTTP/1.1 200 OK" in err
    assert "< set-cookie: sid=***; Path=/" in err
    assert "dXNlcjpwdw" not in err
    assert "s3cret" not in err
    before = await run_cli("-v", "get", server.url("/echo"))
    assert "> GET /echo HTTP/1.1" in before.stderr.decode()  # -v before the subcommand too


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> tuple[ssl.SSLContext, Path]:
    import trustme

    ca = trustme.CA()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_ctx)
    pem = tmp_path_factory.mktemp("ca") / "ca.pem"
    ca.cert_pem.write_to_path(str(pem))
    return server_ctx, pem


async def test_cacert(nursery: trio.Nursery, tls: tuple[ssl.SSLContext, Path]) -> None:
    server_ctx, pem = tls
    secure = await nursery.start(partial(serve_http, site, ssl_context=server_ctx))
    trusted = await run_cli("get", "--cacert", str(pem), secure.url("/"))
    assert trusted.returncode == 0, trusted.stderr
    assert trusted.stdout.decode().endswith("10240 bytes in body\n")
    untrusted = await run_cli("get", secure.url("/"))
    assert untrusted.returncode == 1
    assert "certificate verify failed" in one_line(untrusted).lower()
    not_pem = await run_cli("get", "--cacert", "/etc/hostname", secure.url("/"))
    assert not_pem.returncode == 2
    assert "--cacert /etc/hostname: " in one_line(not_pem)


@pytest.mark.parametrize("case", ["untrusted", "wrong-name", "not-tls"])
async def test_tls_failures_are_the_tls_words_only(
    nursery: trio.Nursery, tls: tuple[ssl.SSLContext, Path], case: str
) -> None:
    """An SSLError's errno is OpenSSL's, not the system's: no "(operation not permitted)";
    and CPython's "(_ssl.c:1006)" is nothing for a user."""
    server_ctx, pem = tls
    if case == "not-tls":  # plain HTTP where TLS was expected
        plain = [("send", b"HTTP/1.1 400 Bad Request\r\n\r\n"), ("close",)]
        server: Any = await nursery.start(serve_evil, plain)
    else:
        server = await nursery.start(partial(serve_http, site, ssl_context=server_ctx))
    url = f"https://127.0.0.1:{server.port}/"
    args = {"untrusted": [url], "not-tls": ["--cacert", str(pem), url]}.get(
        case, ["--cacert", str(pem), f"https://localhost:{server.port}/"]
    )
    result = await run_cli("get", "--timeout", "10", *args)
    assert result.returncode == 1
    err = one_line(result)
    assert "TLS" in err
    assert "(operation not permitted)" not in err
    assert "_ssl.c" not in err
    expected = {"untrusted": "certificate verify failed", "wrong-name": "localhost"}
    assert expected.get(case, "") in err


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("SECRETNOEQ", "***"),  # all value: masked whole
        ("a=1; b=SECRET2;c", "a=***; b=***;***"),  # names kept, separators as sent
        ("sid=x", "sid=***"),
    ],
)
def test_cookie_values_are_masked_whatever_their_shape(value: str, shown: str) -> None:
    from trio_timehttp._cli_get import masked

    assert masked("Cookie", value) == shown


def test_a_header_typed_on_a_latin1_terminal_is_taken_as_latin1() -> None:
    from trio_timehttp._cli_args import header_arg

    typed = b"X-T: caf\xe9".decode("utf-8", "surrogateescape")  # argv as Python sees it
    assert header_arg(typed) == ("X-T", "caf\xe9")
