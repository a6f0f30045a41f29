"""Helpers for tests that drive real outside programs (rdate, xinetd, nginx, httpbin, htpdate)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import trio

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
_SBIN = ("/usr/sbin", "/sbin", "/usr/local/sbin")


def require_program(name: str) -> str:
    """Path of an outside program; skip without it locally, fail without it in CI."""
    path = shutil.which(name) or shutil.which(name, path=os.pathsep.join(_SBIN))
    if path is None:
        message = f"{name} is not installed (run: bash .ci/run, or apt-get install it)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return path


def unused_port(kind: int = socket.SOCK_STREAM, host: str = "127.0.0.1") -> int:
    """A port the OS just handed out on ``host`` (for programs that cannot take port 0)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, kind) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def wait_for_tcp(
    host: str, port: int, proc: subprocess.Popen[bytes] | None = None, deadline: float = 15.0
) -> None:
    """Bounded connect-retry until an outside server accepts (a deadline, not a fixed sleep)."""
    end = time.monotonic() + deadline
    delay = 0.005
    while True:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with status {proc.returncode} before listening")
        try:
            with socket.create_connection((host, port), timeout=1.0):
                return
        except OSError:
            if time.monotonic() > end:
                raise
        time.sleep(delay)  # back-off between connection attempts, bounded by the deadline
        delay = min(delay * 2, 0.1)


@contextmanager
def running(
    cmd: list[str], *, cwd: str | None = None, env: dict[str, str] | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """Run an outside server for the duration of a ``with`` block, and always stop it."""
    proc = subprocess.Popen(
        cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


NGINX_CONF = """\
{user}
worker_processes 1;
daemon off;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 256; }}
http {{
    access_log off;
    client_body_temp_path {prefix}/client_body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    default_type application/octet-stream;
    sendfile on;
    keepalive_requests 10000;
    server {{
        listen 127.0.0.1:{port};
        root {prefix}/html;
        location = /redirect {{ return 301 /index.html; }}
        location /ssi/ {{ ssi on; ssi_types *; }}
{extra}
    }}
}}
"""


@contextmanager
def nginx(prefix: str, *, extra: str = "") -> Iterator[str]:
    """Run Debian's nginx on a private config in ``prefix``; yields its base URL.

    Serves ``prefix/html`` (create files there first), with ``/redirect`` (301
    to ``/index.html``) and ``/ssi/`` (SSI on: responses come chunked).
    """
    binary = require_program("nginx")
    port = unused_port()
    os.makedirs(os.path.join(prefix, "html"), exist_ok=True)
    conf = os.path.join(prefix, "nginx.conf")
    # As root, nginx workers switch to "nobody", who cannot enter pytest's
    # private (0700) temp directories: keep them as the current user.
    user = "user root;" if os.geteuid() == 0 else ""
    with open(conf, "w") as f:
        f.write(NGINX_CONF.format(user=user, prefix=prefix, port=port, extra=extra))
    with running([binary, "-p", prefix, "-c", conf]) as proc:
        wait_for_tcp("127.0.0.1", port, proc)
        yield f"http://127.0.0.1:{port}"


class Lines:
    """Line reader over a Trio receive stream (a subprocess's stdout)."""

    def __init__(self, stream: trio.abc.ReceiveStream) -> None:
        self.stream = stream
        self.buffer = b""

    async def next(self) -> str:
        """The next line, without its newline; EOFError at the end of the stream."""
        while b"\n" not in self.buffer:
            chunk = await self.stream.receive_some(4096)
            if not chunk:
                raise EOFError(self.buffer.decode())
            self.buffer += chunk
        line, _, self.buffer = self.buffer.partition(b"\n")
        return line.decode()
