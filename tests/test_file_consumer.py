"""FileConsumer: a complete body in place, or nothing new; what is at the path never destroyed.

The unit tests call the consumer's methods directly with hand-built responses
and real files: regular files, symlinks, a FIFO with a real reader, char
devices (a private ``mknod`` clone of /dev/null as root, /dev/null itself and
/dev/full), a directory, and unwritable places (as ``nobody`` through
``setpriv`` when the tests run as root). The ``fetch`` tests at the end run
it against the local h11 test server.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trio

from trio_timehttp import ConnectError, FileConsumer, ProtocolError, Request, Response, fetch
from trio_timehttp._headers import Headers

from helpers import serve_evil

URL = "http://example.com/doc"


def make_response(status: int | None = 200, headers: Any = (), *, method: str = "GET") -> Response:
    return Response(
        url=URL,
        request=Request(method, URL),
        status_code=status,
        reason="OK" if status else "",
        headers=Headers(headers),
    )


def failure() -> Response:
    response = make_response(None)
    response.error = ConnectionRefusedError("refused")
    return response


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def download(consumer: FileConsumer, *chunks: bytes, complete: bool = True) -> None:
    """Drive the consumer as the requester does for one response."""
    consumer.http_header(make_response())
    for chunk in chunks:
        consumer.feed(chunk)
    if complete:
        consumer.http_complete()
    consumer.close()


# -- a regular file or a new path: temporary file, renamed after http_complete ---------------


def test_renamed_into_place_only_after_http_complete(tmp_path: Path) -> None:
    target = tmp_path / "out.bin"
    c = FileConsumer(target)
    c.http_header(make_response(headers={"content-length": "6"}))
    c.feed(b"abc")
    # Mid-transfer: nothing at the final path, one hidden temporary beside it.
    assert not target.exists()
    (tmp,) = leftovers(tmp_path)
    assert tmp.startswith(".out.bin.")
    assert tmp.endswith(".part")
    c.feed(b"def")
    assert c.bytes_written == 6
    c.http_complete()
    assert not target.exists()  # the rename is close()'s
    c.close()
    assert target.read_bytes() == b"abcdef"
    assert leftovers(tmp_path) == ["out.bin"]
    assert c.complete


@pytest.mark.parametrize("length", [None, "6"])
def test_close_without_http_complete_is_a_failure(tmp_path: Path, length: str | None) -> None:
    """An interrupted fetch (Ctrl-C, an outer cancel) closes without the signal: nothing new.

    Even with every announced byte on disk: only the requester can say the
    framing ended (a decoding requester feeds more than Content-Length).
    """
    target = tmp_path / "out"
    target.write_bytes(b"previous")
    c = FileConsumer(target)
    c.http_header(make_response(headers={"content-length": length} if length else {}))
    c.feed(b"abcdef")
    c.close()
    assert target.read_bytes() == b"previous"
    assert leftovers(tmp_path) == ["out"]
    assert not c.complete


def test_str_path_and_an_old_file_replaced_keeping_its_mode(tmp_path: Path) -> None:
    target = tmp_path / "out.txt"
    target.write_bytes(b"old")
    target.chmod(0o640)
    c = FileConsumer(str(target))
    download(c, b"new")
    assert target.read_bytes() == b"new"
    assert stat.S_IMODE(target.stat().st_mode) == 0o640


def test_new_file_permissions_follow_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        download(FileConsumer(tmp_path / "perm"))
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "perm").stat().st_mode) == 0o644


@pytest.mark.parametrize(("status", "method"), [(204, "GET"), (200, "HEAD")])
def test_empty_bodies_complete(tmp_path: Path, status: int, method: str) -> None:
    target = tmp_path / "empty"
    c = FileConsumer(target)
    c.http_header(make_response(status, {"content-length": "100"}, method=method))
    c.http_complete()
    c.close()
    assert target.read_bytes() == b""
    assert c.complete


@pytest.mark.parametrize("how", ["http_error", "failure_response", "no_response"])
def test_failed_transfer_leaves_nothing_new(tmp_path: Path, how: str) -> None:
    target = tmp_path / "out"
    target.write_bytes(b"previous")
    c = FileConsumer(target)
    if how == "failure_response":
        c.http_header(failure())
    elif how == "http_error":
        c.http_header(make_response(headers={"content-length": "10"}))
        c.feed(b"12345")
        c.http_error(RuntimeError("connection reset"))
        c.feed(b"ignored after a failure")
    c.http_complete()  # too late, or never earned: no effect after a failure
    c.close()
    c.close()  # idempotent
    assert target.read_bytes() == b"previous"
    assert leftovers(tmp_path) == ["out"]
    assert not c.complete


def test_write_error_fails_the_transfer(tmp_path: Path) -> None:
    c = FileConsumer(tmp_path / "out")
    c.http_header(make_response())
    with pytest.raises(TypeError):
        c.feed("not bytes")  # type: ignore[arg-type]
    c.http_complete()
    c.close()
    assert leftovers(tmp_path) == []


def test_second_head_starts_over(tmp_path: Path) -> None:
    target = tmp_path / "out"
    c = FileConsumer(target)
    c.http_header(make_response())
    c.feed(b"first, longer")
    c.http_header(make_response())
    c.feed(b"second")
    c.http_complete()
    c.close()
    assert target.read_bytes() == b"second"
    assert leftovers(tmp_path) == ["out"]


def test_feed_without_http_header_is_not_complete(tmp_path: Path) -> None:
    c = FileConsumer(tmp_path / "out")
    c.feed(b"data")
    c.http_complete()
    c.close()
    assert leftovers(tmp_path) == []


def test_gives_up_when_no_temporary_name_is_free(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("trio_timehttp._fileconsumer.secrets.token_hex", lambda n: "same")
    (tmp_path / ".out.same.part").write_bytes(b"someone else's")
    c = FileConsumer(tmp_path / "out")
    with pytest.raises(FileExistsError, match="temporary file") as info:
        c.open()
    assert info.value.filename == str(tmp_path / "out")
    c.close()
    assert leftovers(tmp_path) == [".out.same.part"]


def test_rename_failure_names_the_path_and_removes_the_temporary(tmp_path: Path) -> None:
    target = tmp_path / "out"
    c = FileConsumer(target)
    c.http_header(make_response())
    c.feed(b"data")
    c.http_complete()
    (target / "inside").mkdir(parents=True)  # a directory appears there meanwhile
    with pytest.raises(IsADirectoryError) as info:
        c.close()
    assert info.value.filename == str(target)
    assert leftovers(tmp_path) == ["out"]
    assert leftovers(target) == ["inside"]
    assert not c.complete


# -- checked before the request, errors name the user's path ---------------------------------


def test_a_directory_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    target = tmp_path / "dir"
    target.mkdir()
    c = FileConsumer(target)
    with pytest.raises(IsADirectoryError) as info:
        c.open()
    assert info.value.filename == str(target)
    assert "part" not in str(info.value)
    c.close()
    assert leftovers(tmp_path) == ["dir"]
    assert leftovers(target) == []


def test_a_missing_directory_names_the_path(tmp_path: Path) -> None:
    target = tmp_path / "missing" / "out"
    c = FileConsumer(target)
    with pytest.raises(FileNotFoundError) as info:
        c.http_header(make_response())
    assert info.value.filename == str(target)
    c.close()


def test_a_symlink_loop_is_an_error_naming_the_path(tmp_path: Path) -> None:
    (tmp_path / "a").symlink_to(tmp_path / "b")
    (tmp_path / "b").symlink_to(tmp_path / "a")
    c = FileConsumer(tmp_path / "a")
    with pytest.raises(OSError, match="symbolic links") as info:
        c.open()
    assert info.value.errno == errno.ELOOP
    assert info.value.filename == str(tmp_path / "a")
    assert (tmp_path / "a").is_symlink()


def run_as_nobody(code: str) -> subprocess.CompletedProcess[str]:
    """Run Python ``code`` as the unprivileged user (root: via setpriv; else: ourselves)."""
    command = [sys.executable, "-c", textwrap.dedent(code)]
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.fail("running as root needs setpriv (util-linux) to test as nobody")
        command = [setpriv, "--reuid=nobody", "--regid=nogroup", "--clear-groups", *command]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    return subprocess.run(
        command, capture_output=True, text=True, env=env, timeout=60, check=False
    )


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory outside pytest's private tmp (which nobody cannot enter)."""
    path = Path(tempfile.mkdtemp(prefix="trio-timehttp-test-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        for p in path.iterdir():
            p.chmod(0o700)
        shutil.rmtree(path)


PROBE = """
    import sys
    from trio_timehttp import FileConsumer
    c = FileConsumer(sys.argv[1] if len(sys.argv) > 1 else {path!r})
    try:
        c.open()
    except OSError as exc:
        print(type(exc).__name__, exc.filename, exc.strerror)
    else:
        print("opened")
    c.close()
"""


def test_an_unwritable_directory_is_refused_naming_the_path(shared_dir: Path) -> None:
    locked = shared_dir / "locked"
    locked.mkdir()
    if os.geteuid() != 0:
        locked.chmod(0o555)
    target = locked / "out"
    result = run_as_nobody(PROBE.format(path=str(target)))
    assert result.stdout.startswith(f"PermissionError {target} Permission denied"), result
    assert f"the directory {locked} is not writable" in result.stdout  # not "the file"
    assert "part" not in result.stdout
    assert leftovers(locked) == []


def test_a_read_only_file_is_not_replaced(shared_dir: Path) -> None:
    """A writable directory does not license replacing a file we may not write."""
    open_dir = shared_dir / "open"
    open_dir.mkdir()
    open_dir.chmod(0o777)
    target = open_dir / "theirs"
    target.write_bytes(b"keep me")
    target.chmod(0o444)
    result = run_as_nobody(PROBE.format(path=str(target)))
    assert result.stdout.startswith(f"PermissionError {target} Permission denied"), result
    assert target.read_bytes() == b"keep me"
    assert leftovers(open_dir) == ["theirs"]


# -- symlinks stay symlinks, non-regular files are written through ---------------------------


def test_a_symlink_stays_a_link_and_its_target_is_replaced(tmp_path: Path) -> None:
    real_dir = tmp_path / "real"
    real_dir.mkdir()
    real = real_dir / "file"
    real.write_bytes(b"old")
    link = tmp_path / "link"
    link.symlink_to(real)
    c = FileConsumer(link)
    c.http_header(make_response())
    c.feed(b"new body")
    # The temporary file sits beside the real file (same file system for the rename).
    assert [n for n in leftovers(real_dir) if n.endswith(".part")]
    c.http_complete()
    c.close()
    assert link.is_symlink()
    assert os.readlink(link) == str(real)
    assert real.read_bytes() == b"new body"
    assert leftovers(real_dir) == ["file"]


def test_a_dangling_symlink_gets_its_target_created(tmp_path: Path) -> None:
    link = tmp_path / "link"
    link.symlink_to(tmp_path / "not-yet")
    download(FileConsumer(link), b"body")
    assert link.is_symlink()
    assert (tmp_path / "not-yet").read_bytes() == b"body"


def test_a_failed_transfer_through_a_symlink_leaves_the_target(tmp_path: Path) -> None:
    real = tmp_path / "file"
    real.write_bytes(b"old")
    link = tmp_path / "link"
    link.symlink_to(real)
    download(FileConsumer(link), b"partial", complete=False)
    assert link.is_symlink()
    assert real.read_bytes() == b"old"
    assert leftovers(tmp_path) == ["file", "link"]


def test_dev_null_stays_a_char_device() -> None:
    before = os.stat("/dev/null")
    c = FileConsumer("/dev/null")
    download(c, b"x" * 100_000)
    after = os.stat("/dev/null")
    assert stat.S_ISCHR(after.st_mode)
    assert (after.st_ino, after.st_rdev) == (before.st_ino, before.st_rdev)
    assert c.complete


def test_a_symlink_to_a_char_device_writes_through(tmp_path: Path) -> None:
    link = tmp_path / "sink"
    link.symlink_to("/dev/null")
    download(FileConsumer(link), b"data")
    assert link.is_symlink()
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)
    assert leftovers(tmp_path) == ["sink"]


@pytest.mark.skipif(os.geteuid() != 0, reason="mknod needs root")
def test_a_device_node_is_written_through_not_replaced(tmp_path: Path) -> None:
    """A private clone of /dev/null (major 1, minor 3): as root, the rename would have won."""
    node = tmp_path / "null"
    os.mknod(node, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    download(FileConsumer(node), b"x" * 1000)
    assert stat.S_ISCHR(node.stat().st_mode)
    assert node.stat().st_rdev == os.makedev(1, 3)
    assert leftovers(tmp_path) == ["null"]
    # A failed transfer: the node is closed, not removed.
    download(FileConsumer(node), b"y", complete=False)
    assert stat.S_ISCHR(node.stat().st_mode)


def test_a_full_device_error_names_the_path() -> None:
    c = FileConsumer("/dev/full")
    c.http_header(make_response())
    with pytest.raises(OSError, match="No space left") as info:
        c.feed(b"x" * 200_000)  # more than the buffer: the write reaches the device
    assert info.value.errno == errno.ENOSPC
    assert info.value.filename == "/dev/full"
    c.http_complete()  # no effect after the failure
    c.close()
    assert not c.complete
    assert stat.S_ISCHR(os.stat("/dev/full").st_mode)


def test_dev_fd_of_an_appending_file_appends(tmp_path: Path) -> None:
    """A shell's ``>> log`` then ``-o /dev/stdout``: the log keeps what it had."""
    log = tmp_path / "log"
    log.write_bytes(b"previous\n")
    fd = os.open(log, os.O_WRONLY | os.O_APPEND)
    try:
        c = FileConsumer(f"/dev/fd/{fd}")
        download(c, b"appended\n")
        assert c.complete
    finally:
        os.close(fd)
    assert log.read_bytes() == b"previous\nappended\n"
    assert leftovers(tmp_path) == ["log"]


def test_proc_self_fd_of_a_pipe_writes_into_the_pipe() -> None:
    read_end, write_end = os.pipe()
    try:
        download(FileConsumer(f"/proc/self/fd/{write_end}"), b"into the pipe")
        assert os.read(read_end, 100) == b"into the pipe"
    finally:
        os.close(read_end)
        os.close(write_end)


def test_a_fifo_is_written_through_to_its_reader(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    out = tmp_path / "got"
    with subprocess.Popen(["sh", "-c", f"cat '{fifo}' > '{out}'"]) as reader:
        c = FileConsumer(fifo)
        for _ in range(600):  # a bounded wait for the reader process to open its end
            try:
                c.open()
                break
            except OSError as exc:
                if exc.errno != errno.ENXIO:  # no reader yet: never a blocking wait
                    raise
            time.sleep(0.05)
        download(c, b"through ", b"the pipe")
        assert reader.wait(timeout=30) == 0
    assert stat.S_ISFIFO(fifo.stat().st_mode)
    assert out.read_bytes() == b"through the pipe"
    assert c.complete
    assert sorted(leftovers(tmp_path)) == ["got", "pipe"]


def test_a_fifo_without_a_reader_is_enxio_at_once_naming_it(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    c = FileConsumer(fifo)
    with pytest.raises(OSError, match="no reader on the FIFO") as caught:
        c.open()
    assert caught.value.errno == errno.ENXIO
    assert caught.value.filename == str(fifo)
    c.close()
    assert leftovers(tmp_path) == ["pipe"]


# -- through fetch, against the local h11 test server ----------------------------------------


BODY = bytes(range(256)) * 400
COMPLETE = {
    "content-length": b"HTTP/1.1 200 OK\r\nContent-Length: 102400\r\n\r\n" + BODY,
    "chunked": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    + b"19000\r\n"
    + BODY
    + b"\r\n0\r\n\r\n",
    "until-close": b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n" + BODY,
}


@pytest.mark.parametrize("framing", sorted(COMPLETE))
async def test_fetch_file_consumer(tmp_path: Path, framing: str) -> None:
    """The requester's http_complete() (the framing ended, or a clean close) puts it in place."""
    target = tmp_path / "big.bin"
    async with trio.open_nursery() as nursery:
        script = [("recv",), ("send", COMPLETE[framing]), ("close",)]
        server = await nursery.start(serve_evil, script)
        consumer = FileConsumer(target)
        await fetch(server.url("/"), consumer)
        nursery.cancel_scope.cancel()
    assert target.read_bytes() == BODY
    assert consumer.complete
    assert leftovers(tmp_path) == ["big.bin"]


@pytest.mark.parametrize(
    "reply",
    [
        b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n12345",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n12345\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n",
    ],
)
async def test_fetch_truncated_body_leaves_no_file(tmp_path: Path, reply: bytes) -> None:
    target = tmp_path / "out"
    target.write_bytes(b"previous")
    async with trio.open_nursery() as nursery:
        server = await nursery.start(serve_evil, [("recv",), ("send", reply), ("close",)])
        consumer = FileConsumer(target)
        with pytest.raises(ProtocolError):
            await fetch(server.url("/"), consumer)
        nursery.cancel_scope.cancel()
    assert target.read_bytes() == b"previous"
    assert leftovers(tmp_path) == ["out"]
    assert not consumer.complete


async def test_fetch_connection_refused_leaves_no_file(tmp_path: Path, refused_port: int) -> None:
    port = refused_port
    consumer = FileConsumer(tmp_path / "out")
    with pytest.raises(ConnectError):
        await fetch(f"http://127.0.0.1:{port}/", consumer)
    assert consumer.response is not None
    assert consumer.response.status_code is None
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("framing", ["chunked", "until-close"])
async def test_fetch_cancelled_mid_body_leaves_no_file(tmp_path: Path, framing: str) -> None:
    """Nothing in the bytes says the body was cut short; the missing signal does."""
    head = b"HTTP/1.1 200 OK\r\n"
    if framing == "chunked":
        head += b"Transfer-Encoding: chunked\r\n\r\n8\r\npart one\r\n"
    else:
        head += b"Connection: close\r\n\r\npart one"

    class CancelAfterFirstChunk(FileConsumer):
        """Cancels the fetch from outside once the first chunk is on disk."""

        scope = trio.CancelScope()

        def feed(self, data: bytes) -> None:
            super().feed(data)
            self.scope.cancel()

    target = tmp_path / "out"
    target.write_bytes(b"previous")
    consumer = CancelAfterFirstChunk(target)
    async with trio.open_nursery() as nursery:
        server = await nursery.start(serve_evil, [("recv",), ("send", head), ("forever",)])
        with consumer.scope:
            await fetch(server.url("/"), consumer)
        nursery.cancel_scope.cancel()
    assert consumer.bytes_written == len(b"part one")
    assert target.read_bytes() == b"previous"
    assert leftovers(tmp_path) == ["out"]
