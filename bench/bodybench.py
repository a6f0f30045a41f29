"""Request bodies and content decoding, ours beside aiohttp and urllib3 (issue 16).

    python -m bench.bodybench [--size-mib 1024] [--gzip-mib 256] [--runs 3]

Workloads, each client in its own fresh process (so its peak RSS is its own):

* ``upload file``: PUT a file of ``--size-mib`` MiB (a sparse file: zeros
  from the page cache) with Content-Length;
* ``upload chunked``: the same bytes from an async generator (urllib3: a
  sync generator), ``Transfer-Encoding: chunked``;
* ``gunzip``: GET ``--gzip-mib`` MiB of text served gzip-encoded with
  Content-Length (a precompressed file), decoded by the client (ours:
  ``decode=True``; aiohttp: ``auto_decompress``; urllib3: ``decode_content``).

The upload sink is ``SINK`` below, a blocking one-connection-at-a-time
server in its own process that reads every body byte (Content-Length, or
chunked through our ``ChunkedReader``) before it answers 204: nginx's
``return 204`` answers before reading, and a client that stops sending when
the answer comes (aiohttp does) would look infinitely fast. The gzip body
comes from nginx (a static ``.gz`` with ``Content-Encoding: gzip`` added),
on loopback, private prefix. Reported: median wall time over ``--runs``, rate,
the client's peak RSS (``VmHWM``), and ``ours/it``: our rate over that
client's in the same run (above 1: we are faster).
Nothing here asserts on speed.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

from ._common import LOOPBACK, unused_port, wait_for_tcp

MiB = 1 << 20

CONF = """\
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {prefix}/tmp;
    default_type application/octet-stream;
    sendfile on;
    server {{
        listen {host}:{port};
        root {prefix}/www;
        location ~ [.]gz$ {{ add_header Content-Encoding gzip; }}
    }}
}}
"""

# One client run: prints {"seconds": ..., "bytes": ..., "maxrss": ...}.
CLIENTS = {
    "ours": """
import resource, time, trio, trio_timehttp as t
async def main():
    class Count:
        n = 0
        def feed(self, d): self.n += len(d)
        def close(self): pass
    sink = Count()
    async def agen():
        chunk = bytes(1 << 20)
        for _ in range(SIZE // (1 << 20)):
            yield chunk
    start = time.perf_counter()
    async with t.Client(timeout=None, decode=True, max_decode_ratio=None) as c:
        if WORK == "gunzip":
            await c.fetch(URL, sink)
            n = sink.n
        else:
            with open(FILE, "rb") as f:
                body = f if WORK == "file" else agen()
                r = await c.fetch(URL, sink, method="PUT", body=body)
                assert r.status_code == 204, r
            n = SIZE
    return time.perf_counter() - start, n
""",
    "aiohttp": """
import asyncio, resource, time, aiohttp
async def main():
    async def agen():
        chunk = bytes(1 << 20)
        for _ in range(SIZE // (1 << 20)):
            yield chunk
    start = time.perf_counter()
    async with aiohttp.ClientSession(auto_decompress=True) as s:
        if WORK == "gunzip":
            async with s.get(URL) as r:
                n = 0
                async for d in r.content.iter_chunked(1 << 18):
                    n += len(d)
        else:
            with open(FILE, "rb") as f:
                data = f if WORK == "file" else agen()
                async with s.put(URL, data=data) as r:
                    assert r.status == 204, r.status
            n = SIZE
    return time.perf_counter() - start, n
""",
    "urllib3": """
import resource, time, urllib3
def main():
    pool = urllib3.HTTPConnectionPool(HOST, PORT, timeout=None)
    def gen():
        chunk = bytes(1 << 20)
        for _ in range(SIZE // (1 << 20)):
            yield chunk
    start = time.perf_counter()
    if WORK == "gunzip":
        r = pool.request("GET", PATH, preload_content=False, decode_content=True)
        n = sum(len(d) for d in r.stream(1 << 18))
    else:
        with open(FILE, "rb") as f:
            if WORK == "file":
                r = pool.urlopen("PUT", PATH, body=f, headers={"Content-Length": str(SIZE)})
            else:
                r = pool.urlopen("PUT", PATH, body=gen(), chunked=True)
        assert r.status == 204, r.status
        n = SIZE
    return time.perf_counter() - start, n
""",
}

SINK = r"""
import socket, sys
from trio_timehttp._framing import ChunkedReader
srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", 0))
srv.listen(8)
print(srv.getsockname()[1], flush=True)
buf = bytearray(1 << 20)
view = memoryview(buf)
while True:
    conn, _ = srv.accept()
    head = b""
    while True:
        while b"\r\n\r\n" not in head:
            data = conn.recv(65536)
            if not data:
                break
            head += data
        if b"\r\n\r\n" not in head:
            break
        head, _, rest = head.partition(b"\r\n\r\n")
        fields = dict(
            line.split(b":", 1) for line in head.split(b"\r\n")[1:] if b":" in line
        )
        fields = {k.strip().lower(): v.strip() for k, v in fields.items()}
        if b"content-length" in fields:
            left = int(fields[b"content-length"]) - len(rest)
            while left > 0:
                n = conn.recv_into(view, min(left, len(buf)))
                if not n:
                    break
                left -= n
            head = b""
        else:
            reader = ChunkedReader()
            reader.feed(rest)
            while not reader.done:
                n = conn.recv_into(view)
                if not n:
                    break
                reader.feed(bytes(view[:n]))
            head = bytes(reader.trailing)
        conn.sendall(b"HTTP/1.1 204 No Content\r\n\r\n")
    conn.close()
"""

RUNNER = """
{prelude}
{client}
import json, resource, inspect
result = main()
if inspect.iscoroutine(result):
    import asyncio
    result = trio.run(main) if "trio" in globals() else asyncio.run(result)
seconds, n = result
# VmHWM: this process's own peak (ru_maxrss would include the parent's at fork).
hwm = [l for l in open("/proc/self/status") if l.startswith("VmHWM")][0].split()[1]
print(json.dumps({{"seconds": seconds, "bytes": n, "maxrss": int(hwm) * 1024}}))
"""


def run_client(name: str, work: str, url: str, file: str, size: int) -> dict[str, float]:
    host, rest = url.split("//", 1)[1].split(":", 1)
    port, path = rest.split("/", 1)
    prelude = (
        f"URL={url!r}; HOST={host!r}; PORT={int(port)}; PATH={'/' + path!r}; "
        f"FILE={file!r}; SIZE={size}; WORK={work!r}"
    )
    client = textwrap.dedent(CLIENTS[name])
    if name == "ours":  # trio.run wants the function, not a coroutine
        client = (
            client.replace("async def main():", "async def _main():") + "\nmain = lambda: None\n"
        )
        code = RUNNER.format(prelude=prelude, client=client).replace(
            "result = main()\n", "import trio\nresult = trio.run(_main)\n"
        )
    else:
        code = RUNNER.format(prelude=prelude, client=client)
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=600
    )
    if out.returncode != 0:
        raise RuntimeError(f"{name} {work}: {out.stderr.strip().splitlines()[-1:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def gzip_file(path: Path, mib: int) -> int:
    """A gzip file of ``mib`` MiB of Python source text (ratio ~4-5); returns the decoded size."""
    root = Path(sys.prefix) / "lib"
    parts: list[bytes] = []
    total = 0
    for f in sorted(root.rglob("*.py")):
        data = f.read_bytes()
        parts.append(data)
        total += len(data)
        if total >= 64 * MiB:
            break
    text = b"".join(parts)
    size = mib * MiB
    with gzip.open(path, "wb", compresslevel=6) as g:
        written = 0
        while written < size:
            piece = text[: size - written]
            g.write(piece)
            written += len(piece)
    return size


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--gzip-mib", type=int, default=256)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bodybench-") as tmp:
        prefix = Path(tmp)
        (prefix / "www").mkdir()
        (prefix / "tmp").mkdir()
        prefix.chmod(0o755)
        (prefix / "www").chmod(0o755)
        upload = prefix / "upload.bin"
        with open(upload, "wb") as f:
            f.truncate(args.size_mib * MiB)
        decoded = gzip_file(prefix / "www" / "text.gz", args.gzip_mib)
        gz_size = (prefix / "www" / "text.gz").stat().st_size
        port = unused_port()
        conf = prefix / "nginx.conf"
        conf.write_text(CONF.format(prefix=prefix, host=LOOPBACK, port=port))
        user = ["-g", "daemon off; user root;"] if os.geteuid() == 0 else ["-g", "daemon off;"]
        nginx = subprocess.Popen(
            ["nginx", "-p", str(prefix), "-c", str(conf), "-e", str(prefix / "error.log"), *user],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        sink = subprocess.Popen(
            [sys.executable, "-c", SINK], stdout=subprocess.PIPE, text=True, start_new_session=True
        )
        assert sink.stdout is not None
        sink_port = int(sink.stdout.readline())
        try:
            wait_for_tcp(port, nginx)
            base = f"http://{LOOPBACK}:{port}"
            sink_url = f"http://{LOOPBACK}:{sink_port}/sink"
            works = [
                ("upload file", "file", sink_url, args.size_mib * MiB),
                ("upload chunked", "agen", sink_url, args.size_mib * MiB),
                ("gunzip", "gunzip", base + "/text.gz", decoded),
            ]
            gz = f"{gz_size / MiB:.0f} MiB"
            print(f"upload {args.size_mib} MiB; gunzip {args.gzip_mib} MiB from {gz} of gzip")
            print(
                f"{'workload':16} {'client':8} {'median s':>9} {'MiB/s':>8} {'peak RSS':>9}",
                end="",
            )
            print(f" {'ours/it':>8}")
            for label, work, url, size in works:
                medians: dict[str, float] = {}
                rows = []
                for name in CLIENTS:
                    runs = []
                    for _ in range(args.runs):
                        try:
                            runs.append(run_client(name, work, url, str(upload), size))
                        except RuntimeError as exc:
                            print(f"{label:16} {name:8} failed: {exc}")
                            break
                    if not runs:
                        continue
                    seconds = statistics.median(r["seconds"] for r in runs)
                    assert all(r["bytes"] == size for r in runs), (name, work, runs)
                    rss = max(r["maxrss"] for r in runs)
                    medians[name] = seconds
                    rows.append((name, seconds, size / MiB / seconds, rss))
                for name, seconds, rate, rss in rows:
                    ratio = seconds / medians.get("ours", seconds)  # our rate over theirs
                    print(
                        f"{label:16} {name:8} {seconds:9.3f} {rate:8.0f} "
                        f"{rss / MiB:7.0f} MiB {ratio:7.2f}x"
                    )
        finally:
            sink.kill()
            sink.wait(timeout=10)
            nginx.terminate()
            nginx.wait(timeout=10)


if __name__ == "__main__":
    main()
