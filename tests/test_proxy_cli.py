"""``--proxy URL`` and ``--no-proxy`` on ``get`` and ``time``, in a subprocess, against an
in-process proxy (the CLI's whole path: argument, keyword, client, error message)."""

from __future__ import annotations

import email.utils
import ipaddress
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable

import pytest
import trio

from helpers import HTTPServer, Reply, ServerRequest, serve_http
from proxyhelpers import TestProxy, serve_proxy

CLI = [sys.executable, "-m", "trio_timehttp"]
SECRET = "Zq-cli-secret"


async def run_cli(
    *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[bytes]:
    with trio.fail_after(60):
        return await trio.run_process([*CLI, *args], capture_stdout=True, capture_stderr=True,
                                      check=False, env=env)  # fmt: skip


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    return env | extra


async def test_get_through_a_proxy(nursery: trio.Nursery) -> None:
    proxy: TestProxy = await nursery.start(serve_proxy)
    result = await run_cli("get", "--proxy", proxy.url_with("u", SECRET), "http://time.example/x",
                           env=clean_env())  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert b"status => HTTP/1.1 200 OK" in result.stdout
    assert b"Proxy-Authorization: Basic" in proxy.heads[0]
    assert proxy.heads[0].startswith(b"GET http://time.example/x HTTP/1.1\r\n")


async def test_get_proxy_errors_are_one_line_without_secrets(nursery: trio.Nursery) -> None:
    proxy: TestProxy = await nursery.start(lambda **kw: serve_proxy("refuse", **kw))
    result = await run_cli("get", "--proxy", proxy.url_with("u", SECRET), "https://time.example/",
                           env=clean_env())  # fmt: skip
    err = result.stderr.decode()
    assert result.returncode != 0
    assert "refused CONNECT time.example:443: 403 Forbidden" in err
    assert "Traceback" not in err
    assert SECRET not in err
    bad = await run_cli("get", "--proxy", f"socks5://u:{SECRET}@h:1", "http://time.example/")
    assert b"SOCKS proxies are not supported" in bad.stderr
    assert SECRET.encode() not in bad.stderr


def loopback_hostname() -> str:
    """This machine's name when /etc/hosts maps it to loopback (no DNS query leaves)."""
    name = socket.gethostname()
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(name, 80, type=socket.SOCK_STREAM)}
    except OSError:
        addresses = set()
    if not addresses or not all(ipaddress.ip_address(a).is_loopback for a in addresses):
        pytest.skip(f"{name!r} does not resolve to loopback only")
    return name


def dated(shift: float) -> Callable[[ServerRequest], Reply]:
    def handler(request: ServerRequest) -> Reply:
        return 200, [("date", email.utils.formatdate(time.time() + shift, usegmt=True))], b""

    return handler


async def test_time_through_the_environment_proxy_and_no_proxy(nursery: trio.Nursery) -> None:
    # The machine's own name is not a loopback *name* to the proxy rules, so the
    # environment's proxy applies to it; /etc/hosts still makes it loopback.
    host = loopback_hostname()
    origin: HTTPServer = await nursery.start(serve_http, dated(-40.0))

    def answer(head: bytes) -> bytes:
        date = email.utils.formatdate(time.time() + 30, usegmt=True).encode()
        return b"HTTP/1.1 200 OK\r\nDate: " + date + b"\r\nContent-Length: 0\r\n\r\n"

    proxy: TestProxy = await nursery.start(lambda **kw: serve_proxy(forward=answer, **kw))
    env = clean_env(http_proxy=proxy.url)
    url = f"http://{host}:{origin.port}/"
    result = await run_cli("time", url, env=env)
    assert result.returncode == 0, result.stderr
    assert b"offset +30." in result.stdout or b"offset +29." in result.stdout
    assert proxy.heads[0].startswith(f"HEAD {url} HTTP/1.1".encode())
    assert origin.requests == []
    result = await run_cli("time", "--no-proxy", url, env=env)
    assert result.returncode == 0, result.stderr
    assert b"offset -40." in result.stdout or b"offset -39." in result.stdout
    assert len(origin.requests) == 1


async def test_proxy_and_no_proxy_exclude_each_other() -> None:
    for command in ("get", "time", "monitor"):
        result = await run_cli(command, "--proxy", "http://p:1", "--no-proxy", "http://x/")
        assert result.returncode == 2
        assert b"not allowed with argument --proxy" in result.stderr


async def test_monitor_reads_url_sources_through_its_proxy(nursery: trio.Nursery) -> None:
    pytest.importorskip("prometheus_client")
    asked = trio.Event()

    def answer(head: bytes) -> bytes:
        asked.set()
        date = email.utils.formatdate(time.time(), usegmt=True).encode()
        return b"HTTP/1.1 200 OK\r\nDate: " + date + b"\r\nContent-Length: 0\r\n\r\n"

    proxy: TestProxy = await nursery.start(lambda **kw: serve_proxy(forward=answer, **kw))
    command = [*CLI, "monitor", "--proxy", proxy.url_with("u", SECRET), "http://time.example/",
               "--metrics-port", "0", "--interval", "30"]  # fmt: skip
    proc = await trio.lowlevel.open_process(command, env=clean_env())
    try:
        with trio.fail_after(60):
            await asked.wait()
    finally:
        proc.terminate()
        with trio.fail_after(60):
            assert await proc.wait() == 0
    assert proxy.heads[0].startswith(b"HEAD http://time.example/ HTTP/1.1\r\n")
    assert b"Proxy-Authorization: Basic" in proxy.heads[0]
