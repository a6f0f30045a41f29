"""Proxies for the tests: an in-process (honest or hostile) proxy, tinyproxy, squid.

``serve_proxy(behaviour)`` runs on Trio in the test's nursery on 127.0.0.1
port 0 and reports readiness with ``task_status``. Each accepted connection
reads request heads and acts by ``behaviour``:

* ``"honest"`` -- CONNECT: ``200`` then splices bytes to ``upstream`` (a
  ``(host, port)``; the requested authority is ignored, so a test can name any
  origin host and still reach its loopback server). Any other request
  (absolute-form, as a forward proxy sees it): answers itself, keep-alive,
  with ``200`` and the body ``proxied <request line>``.
* ``"auth"`` -- as honest, but only with ``Proxy-Authorization`` for
  ``credentials``; otherwise ``407`` with ``Proxy-Authenticate``.
* ``"refuse"`` -- ``403 Forbidden`` (with a body), then close.
* ``"body"`` -- a ``200`` to CONNECT that announces and sends a body.
* ``"drip"`` -- a reply head that never ends, one header byte every 50 ms.
* ``"endless"`` -- a reply head that never ends, as fast as the socket takes it.
* ``"close_mid_tunnel"`` -- ``200`` to CONNECT, reads the ClientHello, closes.
* ``"silent"`` -- reads and never answers.

``proxy.heads`` records every request head seen, ``proxy.tunnel_bytes`` the
bytes that went client -> upstream through tunnels.

``tinyproxy(prefix, ...)`` and ``squid(prefix, ...)`` run the Debian programs
on private configs (peerutil style: bounded readiness polling; under
``CI=true`` a missing program fails).
"""

from __future__ import annotations

import base64
import contextlib
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import trio

from peerutil import require_program, running, unused_port, wait_for_tcp

__all__ = ["TestProxy", "serve_proxy", "squid", "tinyproxy"]


@dataclass
class TestProxy:
    """State of a running ``serve_proxy``."""

    __test__ = False  # not a pytest class

    host: str
    port: int
    heads: list[bytes] = field(default_factory=list)
    tunnel_bytes: bytearray = field(default_factory=bytearray)
    connections: int = 0
    open: int = 0

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def url_with(self, user: str, password: str) -> str:
        return f"http://{user}:{password}@{self.host}:{self.port}"


class _Conn:
    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.buffer = b""

    async def head(self) -> bytes | None:
        while b"\r\n\r\n" not in self.buffer:
            try:
                data = await self.stream.receive_some(65536)
            except trio.BrokenResourceError:
                return None
            if not data or len(self.buffer) > 65536:
                return None
            self.buffer += data
        head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
        return head

    async def send(self, data: bytes) -> bool:
        try:
            await self.stream.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return False
        return True


async def _copy(
    source: trio.abc.ReceiveStream, sink: trio.abc.SendStream, record: bytearray | None
) -> None:
    with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
        while data := await source.receive_some(65536):
            if record is not None:
                record += data
            await sink.send_all(data)
    with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError, OSError):
        await sink.send_eof()  # type: ignore[attr-defined]


async def _splice(conn: _Conn, upstream: tuple[str, int], proxy: TestProxy) -> None:
    try:
        origin = await trio.open_tcp_stream(*upstream)
    except OSError:
        await conn.send(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
        return
    async with origin:
        if not await conn.send(b"HTTP/1.1 200 Connection established\r\n\r\n"):
            return
        if conn.buffer:
            proxy.tunnel_bytes += conn.buffer
            await origin.send_all(conn.buffer)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_copy, conn.stream, origin, proxy.tunnel_bytes)
            nursery.start_soon(_copy, origin, conn.stream, None)


def _authorized(head: bytes, credentials: tuple[str, str] | None) -> bool:
    if credentials is None:
        return True
    expected = b"Basic " + base64.b64encode(":".join(credentials).encode())
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"proxy-authorization" and value.strip() == expected:
            return True
    return False


Forward = Callable[[bytes], bytes]


async def _honest(
    conn: _Conn,
    head: bytes,
    proxy: TestProxy,
    upstream: tuple[str, int] | None,
    forward: Forward | None,
) -> bool:
    """Serve one request honestly; False when the connection is done."""
    request_line = head.split(b"\r\n", 1)[0]
    if request_line.startswith(b"CONNECT "):
        assert upstream is not None, "an honest CONNECT needs an upstream"
        await _splice(conn, upstream, proxy)
        return False
    if forward is not None:
        return await conn.send(forward(head))
    body = b"proxied " + request_line
    reply = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nDate: Tue, 01 Dec 2026 12:00:00 GMT\r\n\r\n"
    return await conn.send(reply % len(body) + body)


async def _hostile(conn: _Conn, behaviour: str) -> None:
    if behaviour == "refuse":
        await conn.send(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 4\r\n\r\nno!\n")
    elif behaviour == "body":
        await conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello")
        await trio.sleep_forever()
    elif behaviour == "drip":
        await conn.send(b"HTTP/1.1 200 OK\r\nX-Drip: ")
        while await conn.send(b"y"):  # noqa: ASYNC110 - dripping is the point
            await trio.sleep(0.05)
    elif behaviour == "endless":
        await conn.send(b"HTTP/1.1 200 OK\r\n")
        while await conn.send(b"X-Endless: yes\r\n" * 256):
            pass
    elif behaviour == "close_mid_tunnel":
        await conn.send(b"HTTP/1.1 200 Connection established\r\n\r\n")
        with contextlib.suppress(trio.BrokenResourceError):
            await conn.stream.receive_some(65536)
    elif behaviour == "silent":
        await trio.sleep_forever()
    else:  # pragma: no cover - a typo in a test
        raise ValueError(f"unknown proxy behaviour {behaviour!r}")


async def serve_proxy(
    behaviour: str = "honest",
    *,
    upstream: tuple[str, int] | None = None,
    credentials: tuple[str, str] | None = None,
    forward: Forward | None = None,
    task_status: trio.TaskStatus[TestProxy] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run an in-process proxy until cancelled; ``started(TestProxy)``.

    ``forward(head) -> reply bytes`` answers non-CONNECT requests instead of
    the default ``proxied <request line>``.
    """
    listener = (await trio.open_tcp_listeners(0, host="127.0.0.1"))[0]
    proxy = TestProxy("127.0.0.1", listener.socket.getsockname()[1])

    async def on_connection(stream: trio.SocketStream) -> None:
        proxy.connections += 1
        proxy.open += 1
        conn = _Conn(stream)
        try:
            while (head := await conn.head()) is not None:
                proxy.heads.append(head)
                if behaviour in ("honest", "auth"):
                    if behaviour == "auth" and not _authorized(head, credentials):
                        await conn.send(
                            b"HTTP/1.1 407 Proxy Authentication Required\r\n"
                            b'Proxy-Authenticate: Basic realm="test"\r\n'
                            b"Content-Length: 0\r\n\r\n"
                        )
                        continue
                    if not await _honest(conn, head, proxy, upstream, forward):
                        return
                else:
                    await _hostile(conn, behaviour)
                    return
        finally:
            proxy.open -= 1
            stream.socket.close()

    async with trio.open_nursery() as nursery:
        task_status.started(proxy)
        await trio.serve_listeners(on_connection, [listener], handler_nursery=nursery)


# --------------------------------------------------------------------------
# tinyproxy and squid

TINYPROXY_CONF = """\
Port {port}
Listen 127.0.0.1
Timeout 60
PidFile "{prefix}/tinyproxy.pid"
LogFile "{prefix}/tinyproxy.log"
LogLevel Info
MaxClients 64
Allow 127.0.0.1
DisableViaHeader Yes
{extra}
"""


@contextlib.contextmanager
def tinyproxy(
    prefix: str, *, connect_ports: tuple[int, ...] = (), basic_auth: tuple[str, str] | None = None
) -> Iterator[str]:
    """Run Debian's tinyproxy on a private config in ``prefix``; yields its URL.

    CONNECT is allowed to ``connect_ports`` only (tinyproxy's ``ConnectPort``;
    with none listed it would allow every port). ``basic_auth=(user, pass)``
    makes it answer 407 without those credentials.
    """
    binary = require_program("tinyproxy")
    port = unused_port()
    extra = [f"ConnectPort {p}" for p in connect_ports] or ["ConnectPort 1"]
    if basic_auth is not None:
        extra.append(f"BasicAuth {basic_auth[0]} {basic_auth[1]}")
    conf = os.path.join(prefix, "tinyproxy.conf")
    with open(conf, "w") as f:
        f.write(TINYPROXY_CONF.format(port=port, prefix=prefix, extra="\n".join(extra)))
    with running([binary, "-d", "-c", conf]) as proc:
        wait_for_tcp("127.0.0.1", port, proc)
        yield f"http://127.0.0.1:{port}"


SQUID_CONF = """\
http_port 127.0.0.1:{port}
pid_filename {prefix}/squid.pid
cache_log {prefix}/cache.log
access_log stdio:{prefix}/access.log
cache_store_log none
coredump_dir {prefix}
netdb_filename none
cache_mem 16 MB
maximum_object_size_in_memory 1 MB
{user}
shutdown_lifetime 0 seconds
acl localhost_src src 127.0.0.0/8
acl Safe_ports port 1-65535
acl CONNECT method CONNECT
{auth}
http_access deny !Safe_ports
http_access allow {allow}
http_access deny all
"""


@contextlib.contextmanager
def squid(*, basic_auth: tuple[str, str] | None = None) -> Iterator[str]:
    """Run Debian's squid (memory cache only) on a private config; yields its URL.

    Its files live in a fresh directory under /tmp that squid's own user can
    enter (as root squid refuses to run without ``cache_effective_user``, and
    pytest's temp directories are private to root); the directory and squid's
    shared-memory segments (named by a unique ``-n`` service name) are removed
    afterwards. CONNECT is allowed to every port. ``basic_auth=(user, pass)``
    requires those credentials (``basic_ncsa_auth`` over an htpasswd file
    written with ``openssl passwd -apr1``).
    """
    binary = require_program("squid")
    prefix = tempfile.mkdtemp(prefix="squid-test-")
    # squid's -n takes letters and digits only (mkdtemp's names may hold "_").
    name = "".join(c for c in os.path.basename(prefix) if c.isalnum())
    try:
        yield from _run_squid(binary, prefix, name, basic_auth)
    finally:
        shutil.rmtree(prefix, ignore_errors=True)
        for entry in os.listdir("/dev/shm") if os.path.isdir("/dev/shm") else []:
            if entry.startswith(name + "-"):
                with contextlib.suppress(OSError):
                    os.unlink(os.path.join("/dev/shm", entry))


def _run_squid(
    binary: str, prefix: str, name: str, basic_auth: tuple[str, str] | None
) -> Iterator[str]:
    port = unused_port()
    auth, allow = "", "localhost_src"
    if basic_auth is not None:
        helper = "/usr/lib/squid/basic_ncsa_auth"
        if not os.path.exists(helper):
            require_program("basic_ncsa_auth")
        hashed = subprocess.run(
            [require_program("openssl"), "passwd", "-apr1", basic_auth[1]],
            check=True, capture_output=True, text=True,
        ).stdout.strip()  # fmt: skip
        with open(os.path.join(prefix, "passwd"), "w") as f:
            f.write(f"{basic_auth[0]}:{hashed}\n")
        auth = (
            f"auth_param basic program {helper} {prefix}/passwd\n"
            "auth_param basic realm test\nacl authed proxy_auth REQUIRED"
        )
        allow = "authed"
    user = ""
    if os.geteuid() == 0:
        proxy_user = pwd.getpwnam("proxy")
        user = "cache_effective_user proxy"
        os.chown(prefix, proxy_user.pw_uid, proxy_user.pw_gid)
        if basic_auth is not None:
            os.chown(os.path.join(prefix, "passwd"), proxy_user.pw_uid, proxy_user.pw_gid)
    conf = os.path.join(prefix, "squid.conf")
    with open(conf, "w") as f:
        f.write(SQUID_CONF.format(port=port, prefix=prefix, user=user, auth=auth, allow=allow))
    with running([binary, "-N", "-n", name, "-f", conf]) as proc:
        try:
            wait_for_tcp("127.0.0.1", port, proc, deadline=30.0)
        except (OSError, RuntimeError) as exc:
            log = os.path.join(prefix, "cache.log")
            tail = "(no cache.log)"
            if os.path.exists(log):
                with open(log) as f:
                    tail = f.read()[-2000:]
            if proc.poll() is not None and proc.stdout is not None:
                tail += proc.stdout.read().decode(errors="replace")[-2000:]
            raise RuntimeError(f"squid did not start: {exc}\n{tail}") from exc
        yield f"http://127.0.0.1:{port}"
