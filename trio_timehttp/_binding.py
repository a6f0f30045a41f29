"""The open step of the time service: bind sockets, or adopt sockets bound elsewhere.

Either way the result is a list of non-blocking stdlib sockets the server
owns from then on (it closes them when it stops). Binding happens before any
task runs, so a bind error is the plain ``OSError`` and nothing is left open.
Adopted sockets are the ones systemd passes (``LISTEN_FDS``), or the ones a
``serve --workers`` supervisor bound and handed down, or a library user's own.
"""

from __future__ import annotations

import errno
import socket
from collections.abc import Iterable, Sequence
from typing import Any

__all__ = [
    "adopt_sockets",
    "bind_sockets",
    "connected_stream",
    "format_address",
    "names",
    "split_by_kind",
]

#: Listen backlog: connections beyond ``max_connections`` wait here, so make
#: it large (the kernel caps it at net.core.somaxconn anyway).
BACKLOG = max(4096, socket.SOMAXCONN)

_KIND_NAMES: dict[int, str] = {int(socket.SOCK_STREAM): "tcp", int(socket.SOCK_DGRAM): "udp"}


def bind_sockets(
    host: str | None, port: int, kind: int, reuse_port: bool = False
) -> list[socket.socket]:
    """Bind (and for TCP, listen on) every address for ``host``; plain OSError on failure.

    ``host=None`` means all IPv4 and all IPv6 addresses, on two sockets (the
    IPv6 one with IPV6_V6ONLY, so the two never conflict). With ``port=0`` we
    try to give the second socket the port the first one got.
    """
    if host is None:
        targets: list[tuple[int, str]] = [
            (socket.AF_INET, "0.0.0.0"),
            (socket.AF_INET6, "::"),
        ]
    else:
        infos = socket.getaddrinfo(host, port, type=kind, flags=socket.AI_PASSIVE)
        targets = []
        for info_family, _, _, _, sockaddr in infos:
            target = (int(info_family), str(sockaddr[0]))
            if target not in targets:
                targets.append(target)
    socks: list[socket.socket] = []
    try:
        for family, address in targets:
            try:
                sock = socket.socket(family, kind)
            except OSError as exc:
                # No IPv6 in this kernel/container: serve IPv4 alone.
                if host is None and exc.errno in (errno.EAFNOSUPPORT, errno.EPROTONOSUPPORT):
                    continue
                raise
            try:
                _configure_and_bind(sock, (address, port), socks, reuse_port)
            except BaseException:
                sock.close()
                raise
            socks.append(sock)
    except BaseException:
        close_all(socks)
        raise
    if not socks:
        raise OSError(errno.EADDRNOTAVAIL, f"no address to bind for host {host!r}")
    return socks


def _configure_and_bind(
    sock: socket.socket,
    target: tuple[str, int],
    earlier: list[socket.socket],
    reuse_port: bool,
) -> None:
    """Set the options every listener needs, then bind (and listen, for TCP)."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        # Several processes share the port; the kernel spreads connections
        # and datagrams across them. Off by default so that a second server
        # on a taken port is an error.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    if sock.family == socket.AF_INET6:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    address, port = target
    bound = False
    if port == 0 and earlier:
        # Same ephemeral port on IPv4 and IPv6 when the OS allows it; if it
        # is taken on this family, any port will do (API: read it back).
        try:
            sock.bind((address, earlier[0].getsockname()[1]))
            bound = True
        except OSError:
            bound = False
    if not bound:
        sock.bind((address, port))
    if sock.type == socket.SOCK_STREAM:
        sock.listen(BACKLOG)
    sock.setblocking(False)


def adopt_sockets(sockets: Iterable[socket.socket], kind: int) -> list[socket.socket]:
    """Take over already-bound sockets of ``kind``: non-blocking, TCP ones listening.

    Raises ``ValueError`` (before changing anything) for a socket that is not
    an IPv4/IPv6 socket of that kind, is not bound, or is a TCP socket already
    connected to a client (what inetd and systemd's ``Accept=yes`` hand over:
    one connection, not a listener), and ``TypeError`` for something that is
    not a ``socket.socket``.
    """
    socks = list(sockets)
    for sock in socks:
        if not isinstance(sock, socket.socket):
            raise TypeError(f"sockets must be stdlib socket.socket objects, not {sock!r}")
        if sock.family not in (socket.AF_INET, socket.AF_INET6):
            raise ValueError(f"sockets: {sock!r} is not an IPv4 or IPv6 socket")
        actual = sock.getsockopt(socket.SOL_SOCKET, socket.SO_TYPE)
        if actual != kind:
            raise ValueError(
                f"sockets: a {_KIND_NAMES.get(actual, str(actual))} socket given "
                f"where {_KIND_NAMES[kind]} sockets are served"
            )
        if sock.getsockname()[1] == 0:
            raise ValueError(f"sockets: {sock!r} is not bound")
        if kind == socket.SOCK_STREAM and connected_stream(sock):
            raise ValueError(
                f"a TCP socket connected to {format_address(sock.getpeername())} was given,"
                " not a listening one: the service accepts its own connections"
                " (systemd: Accept=no, the default; systemd-socket-activate without"
                " --accept; inetd: not supported)"
            )
    for sock in socks:
        if kind == socket.SOCK_STREAM and not sock.getsockopt(
            socket.SOL_SOCKET, socket.SO_ACCEPTCONN
        ):
            sock.listen(BACKLOG)
        sock.setblocking(False)
    return socks


def connected_stream(sock: socket.socket) -> bool:
    """Whether a stream socket has a peer (accepted or connected), rather than listening."""
    if sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
        return False
    try:
        sock.getpeername()
    except OSError:
        return False
    return True


def split_by_kind(sockets: Iterable[socket.socket]) -> tuple[list[Any], list[Any]]:
    """``(stream sockets, datagram sockets)``, told apart by ``SO_TYPE`` (not the object's type).

    ``SO_TYPE`` is what the kernel says; a ``socket.socket(fileno=fd)`` made
    from an inherited descriptor also detects it, but a caller's object may
    have been built with a wrong guess.
    """
    tcp: list[socket.socket] = []
    udp: list[socket.socket] = []
    for sock in sockets:
        kind = sock.getsockopt(socket.SOL_SOCKET, socket.SO_TYPE)
        (tcp if kind == socket.SOCK_STREAM else udp).append(sock)
    return tcp, udp


def close_all(socks: Iterable[socket.socket]) -> None:
    for sock in socks:
        sock.close()


def format_address(addr: Any) -> str:
    """``host:port`` for an IPv4 socket address, ``[host]:port`` for IPv6."""
    host, port = addr[0], addr[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def names(socks: Sequence[socket.socket]) -> str:
    """The bound addresses of ``socks`` as ``host:port, [v6]:port``."""
    try:
        return ", ".join(format_address(sock.getsockname()) for sock in socks)
    except OSError:  # a closed socket has no name
        return f"{len(socks)} socket(s)"


def is_wildcard(sock: socket.socket) -> bool:
    """Bound to every address of its family (``0.0.0.0`` or ``::``)."""
    return sock.getsockname()[0] in ("0.0.0.0", "::")
