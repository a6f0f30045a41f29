"""``get -v``: the request heads it shows are the bytes that went on the wire.

A raw-socket server (and an in-test forward proxy) records every request head
it receives; ``-v``'s ``>`` lines, hop by hop, must equal those bytes line by
line, with only the credentials masked. Real subprocesses on loopback.
"""

from __future__ import annotations

import sys
from functools import partial
from typing import Any

import trio

from helpers import EvilConnection, serve_evil
from proxyhelpers import serve_proxy

CLI = [sys.executable, "-m", "trio_timehttp"]

SECRETS = ["-H", "Authorization: Basic dXNlcjpwdw==", "-H", "Cookie: a=1; b=2"]
MASKS = [(b"Basic dXNlcjpwdw==", b"Basic ***"), (b"a=1; b=2", b"a=***; b=***")]


async def run_cli(*args: str) -> Any:
    with trio.fail_after(60):
        return await trio.run_process([*CLI, *args], capture_stdout=True, capture_stderr=True,
                                      check=False)  # fmt: skip


def shown_requests(stderr: bytes) -> list[list[bytes]]:
    """``-v``'s request heads: the ``> `` lines of each hop, without the prefix."""
    heads: list[list[bytes]] = []
    current: list[bytes] = []
    for line in stderr.splitlines():
        if line == b">":
            heads.append(current)
            current = []
        elif line.startswith(b"> "):
            current.append(line[2:])
    return heads


def expected(head: bytes, masks: list[tuple[bytes, bytes]]) -> list[bytes]:
    """A received head's lines, as ``-v`` must show them: secrets masked, nothing else changed."""
    for secret, mask in masks:
        assert secret in head, head  # the secret did go on the wire
        head = head.replace(secret, mask)
    return head.removesuffix(b"\r\n\r\n").split(b"\r\n")  # the proxy keeps it without


class RedirectThenOK:
    """A raw server script: 302 to ``/next?q=1``, then 200; every request head kept."""

    def __init__(self) -> None:
        self.heads: list[bytes] = []

    async def __call__(self, conn: EvilConnection) -> None:
        self.heads.append(await conn.recv_request())
        await conn.send(b"HTTP/1.1 302 Found\r\nLocation: /next?q=1\r\nContent-Length: 0\r\n\r\n")
        self.heads.append(await conn.recv_request())
        await conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await conn.recv_request()  # until the client goes


async def test_verbose_shows_the_heads_sent_direct(nursery: trio.Nursery) -> None:
    # Before: "> Host: 127.0.0.1:P" and "> host: evil" both shown, "> content-length: 5"
    # and "> transfer-encoding: chunked" shown but never sent, user-agent never shown.
    script = RedirectThenOK()
    server = await nursery.start(serve_evil, script)
    overrides = ["-H", "Host: evil", "-H", "Content-Length: 5", "-H", "Transfer-Encoding: chunked"]
    result = await run_cli("get", "-s", "-v", server.url("/first"), *SECRETS, *overrides)
    assert result.returncode == 0, result.stderr
    sent = script.heads
    assert len(sent) == 2
    assert sent[0].startswith(b"GET /first HTTP/1.1\r\n")
    assert sent[1].startswith(b"GET /next?q=1 HTTP/1.1\r\n")
    assert shown_requests(result.stderr) == [expected(head, MASKS) for head in sent]
    assert b"dXNlcjpwdw" not in result.stderr


async def test_verbose_shows_the_heads_sent_through_a_forward_proxy(
    nursery: trio.Nursery,
) -> None:
    # Before: "> GET /x" and no Proxy-Authorization, where the wire had the absolute
    # form and the proxy's credentials.
    proxy = await nursery.start(partial(serve_proxy, "auth", credentials=("u", "s3cret")))
    url = "http://origin.invalid:8080/x?y=1"
    result = await run_cli(
        "get", "-s", "-v", "--proxy", proxy.url_with("u", "s3cret"), url, *SECRETS
    )
    assert result.returncode == 0, result.stderr
    assert len(proxy.heads) == 1
    head = proxy.heads[0]
    assert head.startswith(b"GET http://origin.invalid:8080/x?y=1 HTTP/1.1\r\n")
    proxy_secret = (b"Basic dTpzM2NyZXQ=", b"Basic ***")
    assert shown_requests(result.stderr) == [expected(head, [*MASKS, proxy_secret])]
    assert b"dTpzM2NyZXQ" not in result.stderr
    assert b"s3cret" not in result.stderr


async def test_verbose_for_a_failed_hop_shows_the_request_being_made(
    nursery: trio.Nursery,
) -> None:
    async def close_at_once(conn: EvilConnection) -> None:
        await conn.recv_request()

    server = await nursery.start(serve_evil, close_at_once)
    result = await run_cli("get", "-s", "-v", server.url("/gone"), *SECRETS)
    assert result.returncode == 1
    shown = shown_requests(result.stderr)
    assert shown[0][:2] == [b"GET /gone HTTP/1.1", f"Host: 127.0.0.1:{server.port}".encode()]
    assert b"authorization: Basic ***" in shown[0]
    assert b"dXNlcjpwdw" not in result.stderr
