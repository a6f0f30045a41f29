"""Resuming downloads with ``FileConsumer(resume=True)`` on real sockets: a
server that honours Range and If-Range (in-process), one that ignores Range,
a changed resource, an already complete ``.part``, a 206 that would corrupt
the file, and a failed attempt that keeps its ``.part`` for the next one."""

from __future__ import annotations

import os
import pathlib
import re
from collections.abc import AsyncIterator

import pytest
import trio

from trio_timehttp import FileConsumer, ProtocolError, fetch

from helpers import ServerRequest, serve_http

DATA = bytes(range(256)) * 400  # 102400 bytes


class Resource:
    """A file served with ETag and byte ranges (RFC 9110 sections 13-14), or not."""

    def __init__(self, data: bytes, *, ranges: bool = True, etag: str = '"v1"') -> None:
        self.data = data
        self.ranges = ranges
        self.etag = etag
        self.cut_after: int | None = None  # send only this many body bytes, then drop

    def __call__(self, request: ServerRequest) -> tuple[int, list[tuple[str, str]], object]:
        headers = [("etag", self.etag), ("accept-ranges", "bytes")]
        wanted = request.header("range")
        if_range = request.header("if-range")
        status, body = 200, self.data
        if self.ranges and wanted and (if_range is None or if_range == self.etag):
            match = re.fullmatch(r"bytes=(\d+)-", wanted)
            assert match
            start = int(match[1])
            if start >= len(self.data):
                return 416, [("content-range", f"bytes */{len(self.data)}")], b""
            status, body = 206, self.data[start:]
            headers.append(
                ("content-range", f"bytes {start}-{len(self.data) - 1}/{len(self.data)}")
            )
        if self.cut_after is None:
            return status, headers, body
        headers.append(("content-length", str(len(body))))
        cut = body[: self.cut_after]

        async def truncated() -> AsyncIterator[bytes]:
            yield cut
            raise trio.BrokenResourceError  # the server drops the connection mid-body

        return status, headers, truncated()


async def download(resource: Resource, path: pathlib.Path) -> tuple[FileConsumer, ServerRequest]:
    error: BaseException | None = None
    async with trio.open_nursery() as nursery:
        server = await nursery.start(serve_http, resource)
        consumer = FileConsumer(path, resume=True)
        try:
            await fetch(server.url("/file"), consumer, headers=consumer.range_headers(), timeout=5)
        except Exception as exc:
            error = exc
        nursery.cancel_scope.cancel()
    if error is not None:
        raise error
    return consumer, server.requests[-1]


def files(tmp_path: pathlib.Path) -> list[str]:
    return sorted(os.listdir(tmp_path))


async def test_a_fresh_download_with_resume_on(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "out.bin"
    consumer, seen = await download(Resource(DATA), path)
    assert seen.header("range") is None
    assert path.read_bytes() == DATA
    assert consumer.complete
    assert files(tmp_path) == ["out.bin"]


async def test_a_broken_transfer_keeps_its_part_and_the_next_one_resumes(
    tmp_path: pathlib.Path,
) -> None:
    path = tmp_path / "out.bin"
    resource = Resource(DATA)
    resource.cut_after = 30000
    with pytest.raises(ProtocolError):
        await download(resource, path)
    assert files(tmp_path) == ["out.bin.part", "out.bin.part.validator"]
    assert (tmp_path / "out.bin.part").read_bytes() == DATA[:30000]
    assert (tmp_path / "out.bin.part.validator").read_text() == '"v1"\n'

    resource.cut_after = None
    consumer, seen = await download(resource, path)
    assert seen.header("range") == "bytes=30000-"
    assert seen.header("if-range") == '"v1"'
    assert consumer.offset == 30000
    assert consumer.bytes_written == len(DATA) - 30000
    assert path.read_bytes() == DATA
    assert files(tmp_path) == ["out.bin"]


async def test_a_changed_resource_starts_over(tmp_path: pathlib.Path) -> None:
    """If-Range with the old ETag: the server sends the new version whole (200)."""
    path = tmp_path / "out.bin"
    (tmp_path / "out.bin.part").write_bytes(b"old version, partial")
    (tmp_path / "out.bin.part.validator").write_text('"v0"\n')
    consumer, seen = await download(Resource(DATA, etag='"v1"'), path)
    assert seen.header("if-range") == '"v0"'
    assert consumer.offset == 0
    assert path.read_bytes() == DATA
    assert files(tmp_path) == ["out.bin"]


async def test_a_server_that_ignores_range_starts_over(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "out.bin"
    (tmp_path / "out.bin.part").write_bytes(DATA[:5000])
    consumer, seen = await download(Resource(DATA, ranges=False), path)
    assert consumer.offset == 0
    assert seen.header("range") == "bytes=5000-"
    assert seen.header("if-range") is None  # no validator saved: as curl, size only
    assert path.read_bytes() == DATA
    assert files(tmp_path) == ["out.bin"]


async def test_a_whole_part_is_completed_by_416(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "out.bin"
    (tmp_path / "out.bin.part").write_bytes(DATA)
    consumer, _ = await download(Resource(DATA), path)
    assert consumer.complete
    assert path.read_bytes() == DATA
    assert files(tmp_path) == ["out.bin"]


async def test_a_part_larger_than_the_resource_is_an_error(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "out.bin"
    (tmp_path / "out.bin.part").write_bytes(DATA + b"extra")
    with pytest.raises(ProtocolError, match="remove it to start over"):
        await download(Resource(DATA), path)
    assert files(tmp_path) == ["out.bin.part"]  # untouched, nothing looks complete


async def test_a_206_from_elsewhere_is_refused_and_the_part_untouched(
    tmp_path: pathlib.Path,
) -> None:
    def liar(request: ServerRequest) -> tuple[int, list[tuple[str, str]], bytes]:
        return 206, [("content-range", f"bytes 0-99/{len(DATA)}")], DATA[:100]

    path = tmp_path / "out.bin"
    (tmp_path / "out.bin.part").write_bytes(DATA[:5000])
    async with trio.open_nursery() as nursery:
        server = await nursery.start(serve_http, liar)
        consumer = FileConsumer(path, resume=True)
        with pytest.raises(ProtocolError, match="asked for bytes from 5000"):
            await fetch(server.url(), consumer, headers=consumer.range_headers())
        nursery.cancel_scope.cancel()
    assert (tmp_path / "out.bin.part").read_bytes() == DATA[:5000]
    assert files(tmp_path) == ["out.bin.part"]


async def test_a_404_leaves_the_part_for_later(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "out.bin"
    (tmp_path / "out.bin.part").write_bytes(DATA[:5000])

    def gone(request: ServerRequest) -> tuple[int, list[tuple[str, str]], bytes]:
        return 404, [], b"not here"

    async with trio.open_nursery() as nursery:
        server = await nursery.start(serve_http, gone)
        consumer = FileConsumer(path, resume=True)
        response = await fetch(server.url(), consumer, headers=consumer.range_headers())
        nursery.cancel_scope.cancel()
    assert response.status_code == 404
    assert (tmp_path / "out.bin.part").read_bytes() == DATA[:5000]
    assert path.read_bytes() == b"not here"  # status codes are data, as without resume


def tail(extra: int) -> tuple[list[tuple[str, str]], bytes]:
    """A 206 for bytes 5000- whose body has ``extra`` bytes more (or fewer) than its range."""
    rng = f"bytes 5000-{len(DATA) - 1}/{len(DATA)}"
    body = DATA[5000:] + b"x" * extra if extra >= 0 else DATA[5000:extra]
    return [("content-range", rng)], body


@pytest.mark.parametrize(
    ("extra", "framing"),
    [
        (1, "content-length"),
        (1000, "content-length"),
        (1, "chunked"),
        (-1, "content-length"),
        (-len(DATA) + 5000, "content-length"),  # an empty body for a 97400-byte range
        (-1, "chunked"),
    ],
)
async def test_a_206_body_that_is_not_its_range_leaves_the_part_as_it_was(
    tmp_path: pathlib.Path, extra: int, framing: str
) -> None:
    headers, body = tail(extra)

    def liar(request: ServerRequest) -> tuple[int, list[tuple[str, str]], object]:
        if framing == "content-length":
            return 206, headers, body

        async def chunks() -> AsyncIterator[bytes]:
            for i in range(0, len(body), 4096):
                yield body[i : i + 4096]

        return 206, headers, chunks()

    path = tmp_path / "out.bin"
    (tmp_path / "out.bin.part").write_bytes(DATA[:5000])
    async with trio.open_nursery() as nursery:
        server = await nursery.start(serve_http, liar)
        consumer = FileConsumer(path, resume=True)
        with pytest.raises(ProtocolError, match=r"206 body for Content-Range .* left as it was"):
            await fetch(server.url(), consumer, headers=consumer.range_headers())
        nursery.cancel_scope.cancel()
    assert (tmp_path / "out.bin.part").read_bytes() == DATA[:5000]
    assert files(tmp_path) == ["out.bin.part"]
    assert not consumer.complete


async def test_a_206_body_beyond_its_range_is_refused_as_it_arrives(
    tmp_path: pathlib.Path,
) -> None:
    """The excess is seen at once: no waiting for a body that never ends."""
    headers, body = tail(0)

    def endless(request: ServerRequest) -> tuple[int, list[tuple[str, str]], object]:
        async def chunks() -> AsyncIterator[bytes]:
            yield body
            yield b"more than the range"
            await trio.sleep_forever()

        return 206, headers, chunks()

    path = tmp_path / "out.bin"
    (tmp_path / "out.bin.part").write_bytes(DATA[:5000])
    async with trio.open_nursery() as nursery:
        server = await nursery.start(serve_http, endless)
        consumer = FileConsumer(path, resume=True)
        with trio.fail_after(20), pytest.raises(ProtocolError, match="is left as it was"):
            await fetch(server.url(), consumer, headers=consumer.range_headers())
        nursery.cancel_scope.cancel()
    assert (tmp_path / "out.bin.part").read_bytes() == DATA[:5000]


async def test_a_206_body_exactly_its_range_is_appended(tmp_path: pathlib.Path) -> None:
    headers, body = tail(0)
    path = tmp_path / "out.bin"
    (tmp_path / "out.bin.part").write_bytes(DATA[:5000])
    async with trio.open_nursery() as nursery:
        server = await nursery.start(serve_http, lambda request: (206, headers, body))
        consumer = FileConsumer(path, resume=True)
        await fetch(server.url(), consumer, headers=consumer.range_headers())
        nursery.cancel_scope.cancel()
    assert consumer.complete
    assert path.read_bytes() == DATA
    assert files(tmp_path) == ["out.bin"]
