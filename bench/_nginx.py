"""nginx as the HTTP server for the client suite: private config, private prefix, loopback only.

Safety (shared/PEERS.md): nginx is started only as
``nginx -p PREFIX -c PREFIX/nginx.conf -e PREFIX/error.log -g 'daemon off;'``
with its pid file, logs and every temp path inside a temporary directory,
listening on 127.0.0.1 only, in its own process group, and it is always
stopped (SIGTERM, then SIGKILL to the group) when the ``with`` block ends.

What it serves (the bodies are zeros: a sparse file made with truncate, so
creating 1 GiB costs nothing and page-cache reads are cheap):

* ``/big.bin``          the bulk file, with Content-Length (static, sendfile)
* ``/chunked/big.bin``  the same bytes with ``Transfer-Encoding: chunked``:
  the SSI filter (``ssi on; ssi_types *``) drops Content-Length, so nginx
  frames the body in chunks of its output buffer size, without changing a
  byte (gzip would change the body).  `check_framing` verifies this.
* ``/small.txt``        100 bytes, for the request-rate workloads.
* ``/tls.bin``          the HTTPS bulk file (its own size: TLS is slower).

Everything is served twice: plain HTTP on ``port`` and HTTPS (TLS 1.3 only,
a certificate for 127.0.0.1 from a throwaway trustme CA whose PEM the
clients are given as ``Site.cafile``) on ``tls_port``.

``keepalive_requests`` is raised so 5,000 sequential requests really use one
connection (nginx 1.22 closes after 1,000 by default).
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ._common import LOOPBACK, started, unused_port, wait_for_tcp
from ._install import which

SMALL_SIZE = 100

CONF = """\
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {prefix}/tmp/client;
    proxy_temp_path {prefix}/tmp/proxy;
    fastcgi_temp_path {prefix}/tmp/fastcgi;
    uwsgi_temp_path {prefix}/tmp/uwsgi;
    scgi_temp_path {prefix}/tmp/scgi;
    types {{ application/octet-stream bin; text/plain txt; }}
    default_type application/octet-stream;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 1000000;
    keepalive_timeout 120s;
    server {{
        listen {host}:{port};
        listen {host}:{tls_port} ssl;
        ssl_certificate {prefix}/cert.pem;
        ssl_certificate_key {prefix}/key.pem;
        ssl_protocols TLSv1.3;
        root {prefix}/www;
        location /chunked/ {{
            alias {prefix}/www/;
            ssi on;
            ssi_types *;
            chunked_transfer_encoding on;
        }}
    }}
}}
"""


@dataclass(frozen=True)
class Site:
    """Where the running nginx serves the benchmark's files."""

    port: int
    bulk_size: int
    tls_port: int = 0
    cafile: str = ""
    tls_size: int = 0

    def url(self, path: str) -> str:
        return f"http://{LOOPBACK}:{self.port}{path}"

    def tls_url(self, path: str) -> str:
        return f"https://{LOOPBACK}:{self.tls_port}{path}"

    @property
    def big(self) -> str:
        return self.url("/big.bin")

    @property
    def chunked(self) -> str:
        return self.url("/chunked/big.bin")

    @property
    def tls_big(self) -> str:
        return self.tls_url("/tls.bin")

    @property
    def tls_small(self) -> str:
        return self.tls_url("/small.txt")

    @property
    def small(self) -> str:
        return self.url("/small.txt")


@contextlib.contextmanager
def running(
    prefix: Path, *, core: int, bulk_size: int, tls_size: int = 256 << 20
) -> Iterator[Site]:
    """Run nginx pinned to ``core`` with its private config under ``prefix``; always stop it."""
    nginx = which("nginx")
    if nginx is None:
        raise RuntimeError("nginx is not installed (apt-get install nginx)")
    www = prefix / "www"
    for d in (www, prefix / "tmp"):
        d.mkdir(parents=True, exist_ok=True)
    # nginx's worker drops root privileges (to "nobody"): it must be able to read the files.
    prefix.chmod(0o755)
    www.chmod(0o755)
    with open(www / "big.bin", "wb") as f:
        f.truncate(bulk_size)  # sparse: zeros, created instantly
    with open(www / "tls.bin", "wb") as f:
        f.truncate(tls_size)
    (www / "small.txt").write_bytes(b"x" * (SMALL_SIZE - 1) + b"\n")
    cafile = _make_certificates(prefix)
    last_error: Exception | None = None
    for _ in range(3):  # the port we picked may be taken by the time nginx binds it
        port, tls_port = unused_port(), unused_port()
        conf = prefix / "nginx.conf"
        conf.write_text(CONF.format(prefix=prefix, host=LOOPBACK, port=port, tls_port=tls_port))
        cmd = [
            nginx,
            "-p",
            str(prefix),
            "-c",
            str(conf),
            "-e",
            str(prefix / "error.log"),
            "-g",
            "daemon off;",
        ]
        with started(cmd, core=core, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) as proc:
            try:
                wait_for_tcp(port, proc, deadline=15.0)
                wait_for_tcp(tls_port, proc, deadline=15.0)
            except (OSError, RuntimeError) as exc:
                last_error = exc
                continue
            site = Site(port, bulk_size, tls_port, cafile, tls_size)
            check_framing(site)
            yield site
            return
    raise RuntimeError(f"nginx did not start: {last_error}; see {prefix}/error.log")


def _make_certificates(prefix: Path) -> str:
    """A throwaway CA and a certificate for the loopback address; returns the CA's PEM path."""
    import trustme

    ca = trustme.CA()
    cert = ca.issue_cert(LOOPBACK, "localhost")
    cert.private_key_pem.write_to_path(str(prefix / "key.pem"))
    cert.cert_chain_pems[0].write_to_path(str(prefix / "cert.pem"))
    for extra in cert.cert_chain_pems[1:]:
        extra.write_to_path(str(prefix / "cert.pem"), append=True)
    ca.cert_pem.write_to_path(str(prefix / "ca.pem"))
    (prefix / "key.pem").chmod(0o644)  # nginx's master reads it as root, but be safe
    return str(prefix / "ca.pem")


def _head(url_path: str, port: int) -> dict[str, str]:
    """Response header fields of a GET (body not read), lower-case names."""
    with socket.create_connection((LOOPBACK, port), timeout=5.0) as s:
        s.sendall(
            f"GET {url_path} HTTP/1.1\r\nHost: {LOOPBACK}\r\nConnection: close\r\n\r\n".encode()
        )
        buf = b""
        while b"\r\n\r\n" not in buf:
            data = s.recv(65536)
            if not data:
                break
            buf += data
    head = buf.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
    if not head[0].startswith("HTTP/1.1 200"):
        raise RuntimeError(f"nginx answered {url_path} with {head[0]!r}")
    fields = {}
    for line in head[1:]:
        name, _, value = line.partition(":")
        fields[name.strip().lower()] = value.strip()
    return fields


def check_framing(site: Site) -> None:
    """Fail loudly unless /big.bin has Content-Length and /chunked/big.bin is chunked."""
    big = _head("/big.bin", site.port)
    if big.get("content-length") != str(site.bulk_size):
        raise RuntimeError(f"/big.bin: expected Content-Length {site.bulk_size}, got {big}")
    chunked = _head("/chunked/big.bin", site.port)
    if chunked.get("transfer-encoding") != "chunked" or "content-length" in chunked:
        raise RuntimeError(f"/chunked/big.bin is not chunked: {chunked}")
    if "content-encoding" in chunked:
        raise RuntimeError(f"/chunked/big.bin is encoded: {chunked}")


def chunk_sizes(site: Site, limit: int = 8) -> list[int]:
    """Sizes of the first chunks nginx sends on the chunked URL (for the README's method notes)."""
    sizes: list[int] = []
    with socket.create_connection((LOOPBACK, site.port), timeout=5.0) as s:
        s.sendall(b"GET /chunked/big.bin HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        buf = b""
        while b"\r\n\r\n" not in buf:
            buf += s.recv(65536)
        buf = buf.split(b"\r\n\r\n", 1)[1]
        while len(sizes) < limit:
            while b"\r\n" not in buf:
                buf += s.recv(65536)
            line, buf = buf.split(b"\r\n", 1)
            size = int(line.split(b";")[0], 16)
            sizes.append(size)
            if size == 0:
                break
            while len(buf) < size + 2:
                data = s.recv(1 << 20)
                if not data:
                    return sizes
                buf += data
            buf = buf[size + 2 :]
    return sizes


if __name__ == "__main__":  # manual check: python -m bench._nginx
    import tempfile

    core = sorted(os.sched_getaffinity(0))[-1]
    with (
        tempfile.TemporaryDirectory(prefix="bench-nginx-") as tmp,
        running(Path(tmp), core=core, bulk_size=1 << 30) as s,
    ):
        print("nginx on port", s.port, "chunk sizes:", chunk_sizes(s))
