"""``get --compressed``, ``--retry N``, ``-C -`` and ``--data-binary``, as a real
subprocess against in-process servers."""

from __future__ import annotations

import gzip
import os
import pathlib
import re
import subprocess
import sys

import trio

from helpers import ServerRequest, serve_http

CLI = [sys.executable, "-m", "trio_timehttp"]
DATA = bytes(range(256)) * 1000


async def run_cli(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    with trio.fail_after(60):
        return await trio.run_process(
            [*CLI, *args], capture_stdout=True, capture_stderr=True, check=False, stdin=stdin
        )


def one_line_error(result: subprocess.CompletedProcess[bytes]) -> str:
    err = result.stderr.decode()
    assert result.returncode != 0
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err
    return err


def gzipped(request: ServerRequest) -> tuple[int, list[tuple[str, str]], bytes]:
    if "gzip" in (request.header("accept-encoding") or ""):
        return 200, [("content-encoding", "gzip")], gzip.compress(b"decoded text\n" * 100)
    return 200, [], b"plain"


async def test_compressed(nursery: trio.Nursery, tmp_path: pathlib.Path) -> None:
    server = await nursery.start(serve_http, gzipped)
    out = tmp_path / "out.txt"
    result = await run_cli("get", server.url(), "--compressed", "-o", str(out), "-s")
    assert result.returncode == 0, result.stderr
    assert out.read_bytes() == b"decoded text\n" * 100
    result = await run_cli("get", server.url(), "--compressed")
    assert b"content-encoding = gzip" in result.stdout
    assert b"1300 bytes in body" in result.stdout  # decoded size


async def test_data_binary_file_streams_with_content_length(
    nursery: trio.Nursery, tmp_path: pathlib.Path
) -> None:
    server = await nursery.start(serve_http)
    source = tmp_path / "payload.bin"
    source.write_bytes(DATA + b"\n\r\n")
    result = await run_cli("get", server.url("/up"), "--data-binary", f"@{source}")
    assert result.returncode == 0, result.stderr
    seen = server.requests[-1]
    assert seen.method == "POST"
    assert seen.body == DATA + b"\n\r\n"  # as is: newlines kept, unlike -d @FILE
    assert seen.header("content-length") == str(len(DATA) + 3)


async def test_data_binary_stdin_pipe_goes_chunked(nursery: trio.Nursery) -> None:
    server = await nursery.start(serve_http)
    result = await run_cli("get", server.url(), "--data-binary", "@-", "-X", "PUT", stdin=DATA)
    assert result.returncode == 0, result.stderr
    seen = server.requests[-1]
    assert (seen.method, seen.body) == ("PUT", DATA)
    assert seen.header("transfer-encoding") == "chunked"


async def test_data_binary_mistakes(tmp_path: pathlib.Path, refused_port: int) -> None:
    url = f"http://127.0.0.1:{refused_port}/"
    err = one_line_error(await run_cli("get", url, "--data-binary", f"@{tmp_path}/missing"))
    assert "--data-binary" in err
    assert "No such file" in err
    err = one_line_error(await run_cli("get", url, "-d", "a", "--data-binary", "b"))
    assert "cannot be combined" in err


async def test_retry(nursery: trio.Nursery) -> None:
    count = [0]

    def flaky(request: ServerRequest) -> tuple[int, list[tuple[str, str]], bytes]:
        count[0] += 1
        if count[0] == 1:
            return 503, [("retry-after", "0")], b"busy"
        return 200, [], b"fine"

    server = await nursery.start(serve_http, flaky)
    result = await run_cli("get", server.url(), "--retry", "2")
    assert result.returncode == 0, result.stderr
    assert b"status => HTTP/1.1 200 OK" in result.stdout
    assert count[0] == 2


async def test_continue_at(nursery: trio.Nursery, tmp_path: pathlib.Path) -> None:
    def ranged(request: ServerRequest) -> tuple[int, list[tuple[str, str]], bytes]:
        wanted = request.header("range")
        if wanted:
            start = int(re.fullmatch(r"bytes=(\d+)-", wanted)[1])  # type: ignore[index]
            rng = f"bytes {start}-{len(DATA) - 1}/{len(DATA)}"
            return 206, [("content-range", rng)], DATA[start:]
        return 200, [], DATA

    server = await nursery.start(serve_http, ranged)
    out = tmp_path / "file.bin"
    (tmp_path / "file.bin.part").write_bytes(DATA[:1000])
    result = await run_cli("get", server.url(), "-C", "-", "-o", str(out), "-s")
    assert result.returncode == 0, result.stderr
    assert server.requests[-1].header("range") == "bytes=1000-"
    assert out.read_bytes() == DATA
    assert sorted(os.listdir(tmp_path)) == ["file.bin"]


async def test_continue_at_mistakes(refused_port: int) -> None:
    url = f"http://127.0.0.1:{refused_port}/"
    err = one_line_error(await run_cli("get", url, "-C", "-"))
    assert "-o FILE" in err
    err = one_line_error(await run_cli("get", url, "-C", "100", "-o", "x"))
    assert "'-' only" in err


async def test_continue_at_with_a_206_that_is_not_its_range(
    nursery: trio.Nursery, tmp_path: pathlib.Path
) -> None:
    """Exit 0 only with the file in place; a lying 206 leaves the .part as it was."""
    replies = {
        "/longer": b" world!!!",  # 9 bytes for the 6 of bytes 5-10
        "/shorter": b" wo",
        "/empty": b"",
    }

    def liar(request: ServerRequest) -> tuple[int, list[tuple[str, str]], bytes]:
        return 206, [("content-range", "bytes 5-10/11")], replies[request.target]

    server = await nursery.start(serve_http, liar)
    for target in replies:
        out = tmp_path / target.strip("/")
        part = tmp_path / f"{out.name}.part"
        part.write_bytes(b"hello")
        result = await run_cli("get", server.url(target), "-C", "-", "-o", str(out))
        assert result.returncode == 1, result.stdout
        assert "Content-Range 'bytes 5-10/11'" in one_line_error(result)
        assert b"bytes in body" not in result.stdout
        assert not out.exists()
        assert part.read_bytes() == b"hello"


async def test_continue_at_with_a_206_short_of_the_file_is_not_success(
    nursery: trio.Nursery, tmp_path: pathlib.Path
) -> None:
    """A 206 for bytes 5-7 of 11 is honest but not the whole file: kept, and exit 1."""

    def partial(request: ServerRequest) -> tuple[int, list[tuple[str, str]], bytes]:
        return 206, [("content-range", "bytes 5-7/11")], b" wo"

    server = await nursery.start(serve_http, partial)
    out = tmp_path / "file"
    (tmp_path / "file.part").write_bytes(b"hello")
    result = await run_cli("get", server.url(), "-C", "-", "-o", str(out))
    assert result.returncode == 1
    assert "run again with -C -" in one_line_error(result)
    assert not out.exists()
    assert (tmp_path / "file.part").read_bytes() == b"hello wo"  # the honest bytes kept
