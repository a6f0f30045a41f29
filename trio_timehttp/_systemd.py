"""The systemd service protocols, without libsystemd: socket activation, readiness, the journal.

- Socket activation (``sd_listen_fds(3)``): a service manager (systemd,
  ``systemd-socket-activate``) binds the sockets and starts us with them as
  file descriptors 3, 4, ... and ``LISTEN_FDS=N``, ``LISTEN_PID=<our pid>``,
  optionally ``LISTEN_FDNAMES=a:b``. `inherited_sockets` turns them into
  stdlib sockets (family and type read from the kernel), marks them
  close-on-exec as ``sd_listen_fds`` does, and removes the variables so a
  child of ours never takes them for its own.
- Readiness (``sd_notify(3)``): `notify` sends ``READY=1`` / ``STOPPING=1``
  lines as one datagram to the Unix socket named by ``NOTIFY_SOCKET`` (a
  path, or ``@name`` in the abstract namespace). No ``NOTIFY_SOCKET``: nothing
  to do. A failed notification is logged, never fatal: the service runs on.
- The journal: `journal_stderr` says whether stderr is the journal stream
  systemd gave us (``JOURNAL_STREAM=dev:inode`` matching fd 2), in which case
  log lines need no timestamps (journald adds its own).
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import MutableMapping
from dataclasses import dataclass

__all__ = ["Inherited", "inherited_sockets", "journal_stderr", "notify"]

logger = logging.getLogger("trio_timehttp.systemd")

#: The first inherited descriptor (``SD_LISTEN_FDS_START``).
LISTEN_FDS_START = 3

_LISTEN_VARS = ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES")


@dataclass(frozen=True)
class Inherited:
    """One socket passed by the service manager: the socket, its fd and its name."""

    sock: socket.socket
    fd: int
    name: str


def inherited_sockets(environ: MutableMapping[str, str], pid: int) -> list[Inherited]:
    """The sockets passed to process ``pid`` through ``environ``, in fd order; [] if none.

    Not for us (no ``LISTEN_FDS``, or ``LISTEN_PID`` names another process):
    ``[]`` and ``environ`` untouched. Otherwise the three variables are
    removed from ``environ``. ``LISTEN_FDNAMES`` gives each socket its name
    (systemd's ``FileDescriptorName=``, ``systemd-socket-activate --fdname``);
    a missing or mismatched list names them all ``"unknown"``, as systemd does.
    Raises ``ValueError`` for a malformed variable or a descriptor that is not
    a socket (closing nothing: the descriptors stay as they were).
    """
    fds_text, pid_text = environ.get("LISTEN_FDS"), environ.get("LISTEN_PID")
    if fds_text is None or pid_text is None:
        return []
    try:
        count, listen_pid = int(fds_text), int(pid_text)
    except ValueError:
        raise ValueError(
            f"LISTEN_FDS={fds_text!r} / LISTEN_PID={pid_text!r}: not whole numbers"
        ) from None
    if listen_pid != pid:
        return []
    if count < 0:
        raise ValueError(f"LISTEN_FDS={fds_text!r}: negative")
    names_text = environ.get("LISTEN_FDNAMES")
    names = names_text.split(":") if names_text is not None else []
    if len(names) != count:
        names = ["unknown"] * count
    fds = range(LISTEN_FDS_START, LISTEN_FDS_START + count)
    result: list[Inherited] = []
    try:
        for fd, name in zip(fds, names, strict=True):
            try:
                sock = socket.socket(fileno=fd)
            except OSError as exc:
                raise ValueError(f"LISTEN_FDS: fd {fd} ({name}) is not a socket: {exc}") from None
            result.append(Inherited(sock, fd, name))
    except BaseException:
        for item in result:
            item.sock.detach()  # the descriptor stays open, as it came
        raise
    for item in result:
        os.set_inheritable(item.fd, False)
    for var in _LISTEN_VARS:
        environ.pop(var, None)
    return result


def _notify_address(value: str) -> str | bytes | None:
    if value.startswith("@"):
        return b"\0" + value[1:].encode()  # the abstract namespace
    if value.startswith("/"):
        return value
    return None


def notify(message: str, environ: MutableMapping[str, str]) -> bool:
    """Send ``message`` (``"READY=1"``, ``"STOPPING=1\\nSTATUS=..."``) to ``NOTIFY_SOCKET``.

    Returns whether a notification was sent. No ``NOTIFY_SOCKET``: ``False``,
    quietly. An address we cannot use (neither ``/path`` nor ``@name``) or a
    send that fails (no listener, a full queue: the send never blocks) is
    logged as a warning and returns ``False``.
    """
    value = environ.get("NOTIFY_SOCKET")
    if not value:
        return False
    address = _notify_address(value)
    if address is None:
        logger.warning("NOTIFY_SOCKET=%r: not a Unix socket path or @name; not notifying", value)
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.sendto(message.encode(), socket.MSG_DONTWAIT, address)
    except OSError as exc:
        logger.warning("could not notify %s of %s: %s", value, message.split("\n")[0], exc)
        return False
    return True


def journal_stderr(environ: MutableMapping[str, str], fd: int = 2) -> bool:
    """Whether ``fd`` (stderr) is the stream ``JOURNAL_STREAM=dev:inode`` names.

    systemd sets the variable for a service whose output goes to the journal;
    comparing it with the descriptor (as ``systemd.exec(5)`` advises) keeps a
    program started *by* the service with its output elsewhere from losing
    its timestamps.
    """
    value = environ.get("JOURNAL_STREAM")
    if not value:
        return False
    dev, _, inode = value.partition(":")
    try:
        stat = os.fstat(fd)
        return (stat.st_dev, stat.st_ino) == (int(dev), int(inode))
    except (OSError, ValueError):
        return False
