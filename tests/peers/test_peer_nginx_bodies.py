"""Bodies against nginx from Debian: gzip on (chunked, streamed by nginx),
a precompressed bomb, uploads through nginx's DAV PUT (it stores what it
reads), Expect: 100-continue, and resuming a download with Range."""

from __future__ import annotations

import gzip
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from test_decoding import gzip_bomb

import trio_timehttp as t

from helpers import Recorder
from peerutil import nginx as run_nginx

pytestmark = pytest.mark.peer

TEXT = b"".join(b"%06d some text nginx will gzip for us\n" % i for i in range(50000))

EXTRA = """
        location /gz/ { gzip on; gzip_types *; gzip_min_length 0; gzip_comp_level 6; }
        location ~ [.]gz$ { add_header Content-Encoding gzip; }
        location /dav/ { dav_methods PUT; create_full_put_path on; client_max_body_size 0; }
"""


@pytest.fixture(scope="module")
def nginx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    prefix: Path = tmp_path_factory.mktemp("nginx")
    html = prefix / "html"
    (html / "gz").mkdir(parents=True)
    (html / "dav").mkdir()
    (html / "gz" / "text.txt").write_bytes(TEXT)
    (html / "file.bin").write_bytes(TEXT)
    (html / "bomb.gz").write_bytes(gzip_bomb(1024))  # 1 GiB of zeros in ~1 MiB
    with run_nginx(str(prefix), extra=EXTRA) as url:
        yield url, html


async def test_gzip_on_is_decoded(nginx: tuple[str, Path]) -> None:
    url, _ = nginx
    sink = t.BytesConsumer()
    response = await t.fetch(url + "/gz/text.txt", sink, decode=True)
    assert response.headers["content-encoding"] == "gzip"
    assert response.headers.get("transfer-encoding") == "chunked"
    assert sink.body == TEXT


async def test_gzip_not_asked_for_is_not_sent(nginx: tuple[str, Path]) -> None:
    url, _ = nginx
    sink = t.BytesConsumer()
    response = await t.fetch(url + "/gz/text.txt", sink)
    assert "content-encoding" not in response.headers
    assert sink.body == TEXT


async def test_a_bomb_from_nginx_is_stopped(nginx: tuple[str, Path]) -> None:
    url, _ = nginx
    consumer = Recorder()
    with pytest.raises(t.BodyTooLarge):
        await t.fetch(url + "/bomb.gz", consumer, decode=True)
    assert consumer.closed == 1


async def test_gzip_body_to_a_file(nginx: tuple[str, Path], tmp_path: Path) -> None:
    url, _ = nginx
    consumer = t.FileConsumer(tmp_path / "text.txt")
    await t.fetch(url + "/gz/text.txt", consumer, decode=True)
    assert (tmp_path / "text.txt").read_bytes() == TEXT


async def test_uploads_through_dav_put(nginx: tuple[str, Path], tmp_path: Path) -> None:
    url, html = nginx
    source = tmp_path / "source.bin"
    data = os.urandom(3 << 20)
    source.write_bytes(data)

    async def agen() -> AsyncIterator[bytes]:
        for i in range(0, len(data), 100_000):
            yield data[i : i + 100_000]

    with source.open("rb") as f:
        response = await t.fetch(url + "/dav/from-file", t.BytesConsumer(), method="PUT", body=f)
    assert response.status_code == 201
    response = await t.fetch(url + "/dav/chunked", t.BytesConsumer(), method="PUT", body=agen())
    assert response.status_code == 201
    response = await t.fetch(
        url + "/dav/expect", t.BytesConsumer(), method="PUT", body=data, expect_continue=True
    )
    assert response.status_code == 201
    for name in ("from-file", "chunked", "expect"):
        assert (html / "dav" / name).read_bytes() == data, name


async def test_resume_with_nginx_ranges(nginx: tuple[str, Path], tmp_path: Path) -> None:
    url, _ = nginx
    path = tmp_path / "file.bin"
    (tmp_path / "file.bin.part").write_bytes(TEXT[:123456])
    consumer = t.FileConsumer(path, resume=True)
    response = await t.fetch(url + "/file.bin", consumer, headers=consumer.range_headers())
    assert response.status_code == 206
    assert consumer.offset == 123456
    assert path.read_bytes() == TEXT
    assert sorted(os.listdir(tmp_path)) == ["file.bin"]


async def test_resume_with_a_stale_validator_starts_over(
    nginx: tuple[str, Path], tmp_path: Path
) -> None:
    url, _ = nginx
    path = tmp_path / "file.bin"
    (tmp_path / "file.bin.part").write_bytes(b"something else entirely")
    (tmp_path / "file.bin.part.validator").write_text('"0-0"\n')
    consumer = t.FileConsumer(path, resume=True)
    response = await t.fetch(url + "/file.bin", consumer, headers=consumer.range_headers())
    assert response.status_code == 200  # If-Range did not match: the whole file
    assert path.read_bytes() == TEXT


async def test_gzip_corrupt_from_nginx_static(nginx: tuple[str, Path], tmp_path: Path) -> None:
    url, html = nginx
    bad = bytearray(gzip.compress(TEXT))
    bad[len(bad) // 3] ^= 0xFF
    (html / "bad.gz").write_bytes(bytes(bad))
    consumer = t.FileConsumer(tmp_path / "out")
    with pytest.raises(t.ProtocolError):
        await t.fetch(url + "/bad.gz", consumer, decode=True)
    assert os.listdir(tmp_path) == []
