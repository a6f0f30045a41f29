"""The time server's per-connection socket calls, each one C call (a speed trick, in one place).

The public route works everywhere and is the fallback: ``socket.socket.accept``
and a ``socket.socket`` per connection. It costs Python frames per
connection (``accept`` reads ``family``/``type`` properties that build enum
members, ``__init__`` and ``close`` run in Python); what the fast route saves
is measured in bench/README.md ("The time server's per-connection calls").
The fast route uses two CPython details, each looked up once, each with
that fallback when absent:

* ``socket.socket._accept``: the C method ``accept`` itself calls (since
  Python 3.3), returning ``(fd, address)``;
* the C type ``socket.socket`` derives from (``socket.socket.__mro__[1]``,
  CPython's ``_socket.socket``): its ``send``/``shutdown``/``close`` are
  direct C calls.

Tests run the server both ways (``fast=False``).
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any

__all__ = ["Accept", "Wrap", "accept_call", "fd_wrapper"]

#: ``accept()`` that returns the new descriptor and the peer's address.
Accept = Callable[[], tuple[int, Any]]
#: Makes a socket object of ``(family, type, proto, fileno)``.
Wrap = Callable[[int, int, int, int], Any]


def accept_call(sock: socket.socket, *, fast: bool = True) -> Accept:
    """An ``accept`` for listening ``sock`` giving ``(fd, address)``; raises as ``accept`` does."""
    method = getattr(sock, "_accept", None) if fast else None
    if callable(method):
        return method  # type: ignore[no-any-return]

    def accept() -> tuple[int, Any]:
        conn, address = sock.accept()
        return conn.detach(), address

    return accept


def fd_wrapper(*, fast: bool = True) -> Wrap:
    """What turns an accepted descriptor into a socket object with send/shutdown/close."""
    base = socket.socket.__mro__[1] if fast else object
    if base is object or not hasattr(base, "send"):
        return socket.socket
    return base
