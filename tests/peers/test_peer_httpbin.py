"""The requester and RedirectingConsumer against httpbin (PyPI) served by gunicorn.

One gunicorn process serves the whole module (started once by a sync,
module-scoped fixture; pytest-trio's async fixtures cannot be module-scoped),
on 127.0.0.1 and a port the OS just handed out, readiness by a bounded
connect-retry, always stopped. Without gunicorn the tests skip locally and
fail under ``CI=true``.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_file_consumer import requester_signals_complete

from trio_timehttp import (
    BytesConsumer,
    FileConsumer,
    RedirectError,
    RedirectingConsumer,
    Response,
    TextConsumer,
    TooManyRedirects,
    fetch,
)

from peerutil import require_program, running, unused_port, wait_for_tcp

pytestmark = pytest.mark.peer

REDIRECT_CODES = [301, 302, 303, 307, 308]


@pytest.fixture(scope="module")
def httpbin() -> Iterator[str]:
    """Base URL of an httpbin served by one gunicorn worker."""
    gunicorn = require_program("gunicorn")
    port = unused_port()
    cmd = [gunicorn, "-b", f"127.0.0.1:{port}", "-w", "1", "httpbin:app"]
    # gunicorn >= 25 opens a control socket in ~/.gunicorn by default; several
    # test servers at once must not share it.
    options = subprocess.run([gunicorn, "--help"], capture_output=True, text=True, check=False)
    if "--no-control-socket" in options.stdout:
        cmd.insert(1, "--no-control-socket")
    with running(cmd) as proc:
        wait_for_tcp("127.0.0.1", port, proc)
        yield f"http://127.0.0.1:{port}"


async def get_json(url: str, **kwargs: Any) -> tuple[Any, Response]:
    inner = BytesConsumer()
    response = await fetch(url, RedirectingConsumer(inner), **kwargs)
    assert inner.response is response
    return json.loads(inner.body), response


@pytest.mark.parametrize("kind", ["redirect", "relative-redirect", "absolute-redirect"])
async def test_redirect_chains(httpbin: str, kind: str) -> None:
    data, response = await get_json(f"{httpbin}/{kind}/4")
    assert response.status_code == 200
    assert response.url == f"{httpbin}/get"
    assert len(response.history) == 4
    assert all(r.status_code == 302 for r in response.history)
    assert data["url"] == f"{httpbin}/get"


async def test_relative_locations_are_relative(httpbin: str) -> None:
    _, response = await get_json(f"{httpbin}/relative-redirect/2")
    assert response.history[0].headers["location"] == "/relative-redirect/1"


async def test_redirect_chain_over_the_limit(httpbin: str) -> None:
    inner = BytesConsumer()
    with pytest.raises(TooManyRedirects):
        await fetch(f"{httpbin}/redirect/11", RedirectingConsumer(inner))
    assert inner.response is not None
    assert inner.response.status_code is None
    assert isinstance(inner.response.error, TooManyRedirects)
    with pytest.raises(TooManyRedirects):
        await fetch(f"{httpbin}/redirect/2", RedirectingConsumer(BytesConsumer(), max_redirects=1))
    data, _ = await get_json(f"{httpbin}/redirect/10")  # exactly the default: fine
    assert data["url"].endswith("/get")


@pytest.mark.parametrize("status", REDIRECT_CODES)
@pytest.mark.parametrize("method", ["GET", "POST", "PUT"])
async def test_redirect_to_method_rules(httpbin: str, status: int, method: str) -> None:
    data, response = await get_json(
        f"{httpbin}/redirect-to?url=/anything&status_code={status}",
        method=method,
        body=b'{"a": 1}',
        headers={"Content-Type": "application/json"},
    )
    assert response.history[0].status_code == status
    keeps = status in (307, 308) or (status in (301, 302) and method != "POST")
    if keeps:
        assert data["method"] == method
        assert data["json"] == {"a": 1}
        assert data["headers"]["Content-Type"] == "application/json"
    else:
        assert data["method"] == "GET"
        assert data["data"] == ""
        assert "Content-Type" not in data["headers"]


async def test_redirect_to_head_stays_head(httpbin: str) -> None:
    inner = BytesConsumer()
    response = await fetch(
        f"{httpbin}/redirect-to?url=/get&status_code=303",
        RedirectingConsumer(inner),
        method="HEAD",
    )
    assert response.status_code == 200
    assert response.request.method == "HEAD"
    assert inner.body == b""


async def test_credentials_dropped_across_hosts(httpbin: str) -> None:
    other = httpbin.replace("127.0.0.1", "localhost")  # same server, another origin
    creds = {"Authorization": "Bearer secret", "Cookie": "s=1", "X-Keep": "yes"}
    data, _ = await get_json(f"{httpbin}/redirect-to?url={other}/anything", headers=creds)
    assert "Authorization" not in data["headers"]
    assert "Cookie" not in data["headers"]
    assert data["headers"]["X-Keep"] == "yes"
    assert data["headers"]["Host"] == other.removeprefix("http://")
    same, _ = await get_json(f"{httpbin}/redirect-to?url=/anything", headers=creds)
    assert same["headers"]["Authorization"] == "Bearer secret"


@pytest.mark.parametrize(
    "location", ["file:///etc/passwd", "ftp://127.0.0.1/", "javascript:alert(1)", "data:,x"]
)
async def test_redirect_to_other_schemes_refused(httpbin: str, location: str) -> None:
    with pytest.raises(RedirectError):
        await fetch(f"{httpbin}/redirect-to?url={location}", RedirectingConsumer(BytesConsumer()))


async def test_fragment_kept_and_not_sent(httpbin: str) -> None:
    data, response = await get_json(f"{httpbin}/redirect/1#part")
    assert response.url == f"{httpbin}/get#part"
    assert data["url"] == f"{httpbin}/get"


async def test_stream(httpbin: str) -> None:
    class Lines:
        def __init__(self) -> None:
            self.text = ""

        def feed(self, text: str) -> None:
            self.text += text

        def close(self) -> None:
            pass

    target = Lines()
    response = await fetch(f"{httpbin}/stream/7", TextConsumer(target))
    assert response.headers.get("transfer-encoding") == "chunked"
    rows = [json.loads(line) for line in target.text.splitlines()]
    assert [row["id"] for row in rows] == list(range(7))


async def test_drip_arrives_in_pieces(httpbin: str) -> None:
    class Counter:
        def __init__(self) -> None:
            self.pieces: list[bytes] = []

        def feed(self, data: bytes) -> None:
            self.pieces.append(data)

        def close(self) -> None:
            pass

    counter = Counter()
    response = await fetch(f"{httpbin}/drip?duration=0.4&numbytes=5&delay=0&code=200", counter)
    assert response.status_code == 200
    assert b"".join(counter.pieces) == b"*****"
    assert len(counter.pieces) > 1  # streamed as it came, not buffered


@pytest.mark.parametrize("code", [200, 204, 404, 418, 500, 503])
async def test_status_codes_are_data(httpbin: str, code: int) -> None:
    inner = BytesConsumer()
    response = await fetch(f"{httpbin}/status/{code}", RedirectingConsumer(inner))
    assert response.status_code == code
    assert inner.response is response


async def test_status_302_followed_only_with_the_wrapper(httpbin: str) -> None:
    plain = await fetch(f"{httpbin}/status/302", BytesConsumer())
    assert plain.status_code == 302
    _, followed = await get_json(f"{httpbin}/status/302")
    assert followed.status_code == 200


async def test_file_consumer(httpbin: str, tmp_path: Path) -> None:
    if not await requester_signals_complete():
        pytest.xfail("this requester does not call http_complete() yet (branch core adds it)")
    target = tmp_path / "bytes.bin"
    consumer = FileConsumer(target)
    await fetch(f"{httpbin}/stream-bytes/5000?seed=1&chunk_size=333", consumer)
    assert target.stat().st_size == 5000
    assert consumer.complete
    assert os.listdir(tmp_path) == ["bytes.bin"]
