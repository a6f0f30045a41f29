"""The requester against nginx from Debian, started by the test with a private
config in a temporary directory (worker_processes 1, loopback only)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urljoin

import pytest

import trio_timehttp as t

from helpers import Recorder, pool_stats
from peerutil import nginx as run_nginx

pytestmark = pytest.mark.peer

FILE = bytes(range(256)) * 4096  # 1 MiB


@pytest.fixture(scope="module")
def nginx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    prefix: Path = tmp_path_factory.mktemp("nginx")
    html = prefix / "html"
    (html / "ssi").mkdir(parents=True)
    (html / "file.bin").write_bytes(FILE)
    (html / "part.txt").write_text("included part\n")
    (html / "ssi" / "page.html").write_text('start\n<!--# include virtual="/part.txt" -->end\n')
    with run_nginx(str(prefix), extra="location = /moved { return 301 /file.bin; }") as url:
        yield url


async def test_content_length_file(nginx: str) -> None:
    c = Recorder()
    r = await t.fetch(nginx + "/file.bin", c)
    assert r.status_code == 200
    assert r.headers["content-length"] == str(len(FILE))
    assert "nginx" in r.headers["server"]
    assert bytes(c.body) == FILE
    assert c.closed == 1


async def test_head(nginx: str) -> None:
    c = Recorder()
    r = await t.fetch(nginx + "/file.bin", c, method="HEAD")
    assert r.status_code == 200
    assert r.headers["content-length"] == str(len(FILE))
    assert c.body == b""


async def test_keep_alive_reuse(nginx: str) -> None:
    async with t.Client() as client:
        for _ in range(5):
            c = Recorder()
            await client.fetch(nginx + "/file.bin", c)
            assert len(c.body) == len(FILE)
        assert pool_stats(client) == (1, 1)  # one connection served all five


async def test_redirect_followed_by_consumer(nginx: str) -> None:
    c = Recorder(follow={301: lambda r: t.Request("GET", urljoin(r.url, r.headers["location"]))})
    async with t.Client() as client:
        r = await client.fetch(nginx + "/moved", c)
        assert r.status_code == 200
        assert [h.status_code for h in r.history] == [301]
        assert bytes(c.body) == FILE
        assert pool_stats(client).open == 1  # the 301's body was drained: one connection


async def test_chunked_ssi(nginx: str) -> None:
    c = Recorder()
    r = await t.fetch(nginx + "/ssi/page.html", c)
    assert r.status_code == 200
    assert r.headers.get("transfer-encoding") == "chunked"
    assert bytes(c.body) == b"start\nincluded part\nend\n"


async def test_404_is_data(nginx: str) -> None:
    c = Recorder()
    r = await t.fetch(nginx + "/missing", c)
    assert r.status_code == 404
    assert b"404" in bytes(c.body)
    assert c.closed == 1
