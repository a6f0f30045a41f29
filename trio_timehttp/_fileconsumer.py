"""``FileConsumer``: a body written to a file that looks complete only when it is.

The body goes to a hidden temporary file beside the target, renamed over it
only after ``http_complete()`` (the framing proved the body whole); any
failure removes it. Devices, FIFOs and ``/dev/stdout`` are written through;
a symlink's target is replaced beside it. With ``resume``, the body goes to
``<target>.part`` instead, which a failed transfer keeps for the next try
(``_partial``, ``_resume``).
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import secrets
import stat
from typing import Any

from ._errors import ProtocolError
from ._models import Request, Response
from ._partial import PartialFile
from ._resume import Action, decide, range_headers

__all__ = [
    "FileConsumer",
]

# os.access(..., effective_ids=True) where the platform has it (Linux does):
# the check must be about the user the process runs as (setuid, setpriv).
_EUID_ACCESS = os.access in os.supports_effective_ids


def _stat_or_none(path: str) -> os.stat_result | None:
    try:
        return os.stat(path)
    except FileNotFoundError:
        return None


_FD_LINK = re.compile(r"/(?:proc/(self|\d+)/fd|dev/fd)/(\d+)")


def _open_descriptor(path: str) -> int | None:
    """The descriptor ``path`` names if it leads to one of ours (``/dev/stdout``), else None.

    Follows the symlinks by their text (at most 40, as the kernel does), so
    ``/dev/stdout -> /proc/self/fd/1`` is fd 1, whatever it is open on.
    """
    current = os.path.abspath(path)
    for _ in range(40):
        match = _FD_LINK.fullmatch(current)
        if match is not None and match[1] in (None, "self", str(os.getpid())):
            return int(match[2])
        if not os.path.islink(current):
            return None
        current = os.path.normpath(os.path.join(os.path.dirname(current), os.readlink(current)))
    return None


def _open_through(path: str, info: os.stat_result) -> int:
    """Open a device or FIFO to write through; a FIFO without a reader is ENXIO, not a wait.

    (A blocking open of a FIFO waits for a reader with no deadline, and no
    Ctrl-C while it waits; a caller wanting to wait retries, as the CLI does.)
    """
    flags = os.O_WRONLY | os.O_NOCTTY
    if stat.S_ISFIFO(info.st_mode):
        flags |= os.O_NONBLOCK
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        if exc.errno == errno.ENXIO and stat.S_ISFIFO(info.st_mode):
            raise OSError(errno.ENXIO, "no reader on the FIFO") from exc
        raise
    os.set_blocking(fd, True)  # the writes themselves wait for the reader, as usual
    return fd


class FileConsumer:
    """Writes the body to ``path``; a failed transfer never leaves a file that looks complete.

    Where ``path`` names a regular file, or nothing yet, the body goes to a
    hidden temporary file beside it (``.NAME.XXXXXXXXXXXX.part``; same
    directory, so the final ``os.replace`` is an atomic rename on one file
    system) and ``close()`` renames it into place only after
    ``http_complete()`` — the requester's word that the body's framing proved
    it complete: Content-Length reached, the last chunk, or, for a body read
    until the close, the close itself, which over TLS must be a close_notify
    (over plain TCP a dropped connection looks the same as that close: such
    a body is kept as complete, as curl keeps it). Anything else — a
    failure ``Response``, ``http_error``, a write error, a cancelled or
    interrupted fetch, ``close()`` without ``http_complete()`` — removes the
    temporary file and leaves whatever was at ``path`` untouched. A replaced
    file keeps its permission bits (a new one gets ``0o666`` less the umask).

    What is at ``path`` is never destroyed: a symlink stays a symlink (the
    file it points to is the one replaced, by a temporary file beside *it*);
    a device, a FIFO or any other non-regular file (``/dev/null``,
    ``/dev/stdout``) is written through, as ``curl -o`` does — such writes
    cannot be taken back, so there a failed transfer leaves what it wrote.
    ``/dev/stdout``, ``/dev/fd/N`` write to that descriptor as it is open
    (a shell's ``>> log`` keeps appending).

    ``open()`` checks and opens the target now; a caller wanting mistakes
    found before the request (the CLI does) calls it first, otherwise the
    first response does. It raises ``OSError`` naming ``path`` (never the
    temporary file): ``IsADirectoryError`` for a directory,
    ``FileNotFoundError`` for a missing directory, ``PermissionError`` for a
    directory that cannot take the temporary file or a read-only file. A
    FIFO without a reader is ``OSError(ENXIO)`` (retry to wait for one).

    Any complete response is written whatever its status (status codes are
    data): check ``.response.status_code``. ``.bytes_written`` counts the
    body so far (for a progress display); ``.complete`` says whether the whole
    body is in place. A second ``http_header`` (a retried request) starts the
    body over.

    Plain blocking writes, not ``trio.wrap_file``: the writes are small and
    sequential into the page cache (microseconds each), while a thread hop
    per chunk would cost more than the write; and this module stays free of
    Trio. For the same reason there is no ``fsync``: the promise is about
    failed *transfers*, not power loss.

    ``resume=True`` (for a regular file, or nothing yet, at ``path``): the
    body goes to ``<target>.part`` instead, which a failed transfer *keeps*;
    ``range_headers()`` gives the ``Range``/``If-Range`` fields that ask for
    the rest of it (pass them to ``fetch`` as ``headers``), and the answer
    decides: a 206 from our offset is appended, a 200 starts
    over, a 416 for exactly our size means the ``.part`` is already whole;
    a 206 that would corrupt the file raises ``ProtocolError`` from
    ``http_header``. The ``.part`` becomes ``path`` only when complete (its
    size the resource's full size, when the answer says it). ``offset`` is
    where this transfer's ``bytes_written`` began.
    """

    def __init__(self, path: str | os.PathLike[str], *, resume: bool = False) -> None:
        self.path = os.fspath(path)
        self.response: Response | None = None
        self.bytes_written = 0
        self.complete = False
        self._file: Any = None
        self._tmp_path: str | None = None  # None while writing through
        self._target = ""  # the real path the temporary file is renamed to
        self._failed = False
        self._ended = False  # http_complete() was called
        self._closed = False
        self.resume = resume
        self.offset = 0
        self._partial: PartialFile | None = None  # resume=True, on a regular target
        self._total: int | None = None  # the resource's size, for a resumed body
        self._dropping = False  # a 416 for a whole .part: its body is no file content
        self._owed: int | None = None  # an appended 206: bytes its Content-Range still owes

    def _error(self, exc: OSError) -> OSError:
        """``exc`` again, naming the user's path (not a temporary file or a resolved link)."""
        return OSError(exc.errno, exc.strerror or str(exc), self.path)

    def open(self) -> None:
        """Check the target and open it now (a second call does nothing).

        Raises ``OSError`` naming ``path``: ``IsADirectoryError``,
        ``FileNotFoundError`` (a missing directory) or ``PermissionError``;
        see the class docstring. Without this call, the first response opens it.
        """
        if self._file is not None or self._partial is not None:
            return
        try:
            own = _open_descriptor(self.path)
            if own is not None:
                # /dev/stdout, /dev/fd/N: a file this process has open (the
                # shell's ``>>`` included): write to it as opened, appending
                # where it appends; never reopened, truncated or replaced.
                self._file = os.fdopen(os.dup(own), "wb", buffering=1 << 16)
                return
            try:
                # Through every symlink, /proc's too: /dev/stdout into a pipe
                # is a pipe, though realpath() names no file for it.
                info: os.stat_result | None = os.stat(self.path)
            except FileNotFoundError:
                info = None  # a new file (or a dangling link's target)
            if info is not None and stat.S_ISDIR(info.st_mode):
                raise IsADirectoryError(errno.EISDIR, "Is a directory")
            if info is not None and not stat.S_ISREG(info.st_mode):
                # O_NOCTTY: writing to a terminal must not make it ours.
                fd = _open_through(self.path, info)
                self._file = os.fdopen(fd, "wb", buffering=1 << 16)
                return
            real = os.path.realpath(self.path)  # the file to replace; the links stay
            directory = os.path.dirname(real)
            if os.path.isdir(directory) and not os.access(
                directory, os.W_OK | os.X_OK, effective_ids=_EUID_ACCESS
            ):  # the temporary file goes there
                raise PermissionError(
                    errno.EACCES, f"Permission denied (the directory {directory} is not writable)"
                )
            if info is not None and not os.access(real, os.W_OK, effective_ids=_EUID_ACCESS):
                raise PermissionError(errno.EACCES, "Permission denied (the file is not writable)")
            if self.resume:
                self._partial = PartialFile(real)  # opened once the answer is known
                self._target = real
                return
            self._open_temporary(real, info)
        except OSError as exc:
            raise self._error(exc) from exc

    def _open_temporary(self, real: str, info: os.stat_result | None) -> None:
        directory, name = os.path.split(real)
        for _ in range(100):
            candidate = os.path.join(directory, f".{name}.{secrets.token_hex(6)}.part")
            try:
                # O_EXCL: never clobber; mode 0o666 so the umask applies as
                # for any new file (mkstemp's 0o600 would survive the rename).
                fd = os.open(candidate, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            except FileExistsError:
                continue
            self._tmp_path = candidate
            self._target = real
            self._file = os.fdopen(fd, "wb", buffering=1 << 16)
            if info is not None:  # replacing a file: keep its permission bits
                os.fchmod(fd, stat.S_IMODE(info.st_mode))
            return
        raise FileExistsError(errno.EEXIST, "could not create a temporary file beside it")

    def _discard(self) -> None:
        """Drop the temporary file (a failed transfer); close a written-through target."""
        if self._file is not None:
            with contextlib.suppress(OSError):  # the data is being thrown away anyway
                self._file.close()
            self._file = None
        if self._tmp_path is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._tmp_path)
            self._tmp_path = None

    def range_headers(self) -> list[tuple[str, str]]:
        """The ``Range``/``If-Range`` fields asking for the rest of the ``.part``.

        With ``resume=True`` and a ``.part`` left by an earlier transfer:
        pass them to ``fetch`` as ``headers``. ``[]`` without ``resume`` or
        without a ``.part``. Opens the target first (see ``open``).
        """
        self.open()
        return [] if self._partial is None else range_headers(self._partial.state())

    def http_header(self, response: Response) -> Request | None:
        """Open the target for a real response; a failure ``Response`` ends the transfer.

        A second real response (a retried request) starts the body over.
        With ``resume=True`` the status decides what happens to the
        ``.part`` (see the class docstring); a 206 that would corrupt it
        raises ``ProtocolError``. Raises ``OSError`` naming ``path`` when the
        target cannot be opened. Returns None (no redirect).
        """
        self.response = response
        self._ended = False
        if response.status_code is None:
            self._failed = True
            self._discard()
            return None
        self._failed = False
        if self._file is not None and self.bytes_written and self._tmp_path is not None:
            self._file.seek(0)
            self._file.truncate()
        self.bytes_written = 0
        self.open()
        if self._partial is not None:
            self._resume_with(response)
        return None

    def _resume_with(self, response: Response) -> None:
        """Open the ``.part`` as the answer decides (append, restart), or give up resuming."""
        assert self._partial is not None
        assert response.status_code is not None
        if self._file is not None:
            self._file.close()
            self._file = None
        state = self._partial.state()
        try:
            decision = decide(state, response.status_code, response.headers)
        except BaseException:
            self._failed = True  # appending would corrupt the file: leave the .part alone
            raise
        self._total = decision.total
        self._owed = decision.length
        self._dropping = decision.action is Action.COMPLETE
        self.offset = state.offset if decision.action is not Action.RESTART else 0
        if decision.action is Action.KEEP:  # not the file's content: as without resume
            self._partial = None
            self._open_temporary(self._target, _stat_or_none(self._target))
        elif not self._dropping:
            try:
                self._file = self._partial.open(decision, response.headers)
            except OSError as exc:
                raise self._error(exc) from exc

    def feed(self, data: bytes) -> None:
        """Write a piece of the body to the temporary file (or the written-through target).

        Adds to ``.bytes_written``. A write error (a full disk, a closed
        FIFO) raises ``OSError`` naming ``path`` and marks the transfer
        failed, so ``close()`` will not put the file in place.
        """
        if self._failed or self._dropping:
            return
        if self._owed is not None:
            if len(data) > self._owed:
                self._reject_range(f"{self.bytes_written + len(data)} bytes or more")
            self._owed -= len(data)
        try:
            if self._file is None:
                self.open()
            self._file.write(data)
        except OSError as exc:
            self._failed = True  # disk full, a closed FIFO, ...: incomplete
            raise self._error(exc) from exc
        except BaseException:
            self._failed = True  # a bad chunk, or an interruption: incomplete
            raise
        self.bytes_written += len(data)

    def _reject_range(self, got: str) -> None:
        """A 206 body that is not its Content-Range: cut the ``.part`` back, raise."""
        assert self._partial is not None
        assert self.response is not None
        self._failed = True
        self._discard()
        self._partial.restore(self.offset)
        promised = self.response.headers.get("content-range")
        raise ProtocolError(
            f"the 206 body for Content-Range {promised!r} held {got}, not"
            f" {self.bytes_written + (self._owed or 0)}: {self._partial.part} is left as it was"
        )

    def _close_partial(self) -> None:
        """Keep the ``.part`` (flushed) unless it is now whole: then put it in place."""
        assert self._partial is not None
        self._discard()  # closes the file; a .part is never removed
        if self._ended and not self._failed and self.response is not None:
            try:
                self.complete = self._partial.finish(self._total)
            except OSError as exc:
                raise self._error(exc) from exc

    def http_error(self, exc: BaseException) -> None:
        """The transfer broke: mark it failed, so nothing is put in place.

        Closes the file; the temporary file is removed (a ``.part`` with
        ``resume=True`` is kept, to be resumed). Never raises.
        """
        self._failed = True
        self._discard()

    def http_complete(self) -> None:
        """The requester's word that the body ended complete; ``close()`` then keeps it.

        Called by the requester just before ``close()``, only after a body
        whose framing proved it complete. Raises ``ProtocolError`` (the
        ``.part`` cut back to its size before the request) when a resumed 206
        body is shorter than its Content-Range; otherwise never raises.
        """
        if self._owed and not self._failed:
            self._reject_range(f"{self.bytes_written} bytes")
        if not self._failed and self.response is not None:
            self._ended = True

    def close(self) -> None:
        """Put the file in place after ``http_complete()``, else remove the temporary file.

        Runs once (a second call does nothing). On success ``.complete``
        is true. An error renaming or closing raises ``OSError`` naming
        ``path``, after the temporary file is removed.
        """
        if self._closed:
            return
        self._closed = True
        if self._partial is not None:
            self._close_partial()
            return
        if not self._ended or self._failed or self._file is None:
            self._discard()
            return
        try:
            self._file.close()
            self._file = None
            if self._tmp_path is not None:
                os.replace(self._tmp_path, self._target)
                self._tmp_path = None
        except OSError as exc:
            self._discard()
            raise self._error(exc) from exc
        except BaseException:
            self._discard()
            raise
        self.complete = True
