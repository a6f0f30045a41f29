"""The test helper for "nothing listens there": a port refused for the test's life.

A fixed port (1, 9) is refused only until another process on the shared
machine listens on it; ``closed_port`` keeps the port bound (not listening) so
that no one else can take it, and every test that means a refused port uses it.
"""

from __future__ import annotations

import re
import socket
from pathlib import Path

import pytest

from helpers import bound_socket, closed_port

TESTS = Path(__file__).resolve().parent


@pytest.mark.parametrize("host", ["127.0.0.1", "::1"])
def test_a_connection_to_it_is_refused(host: str) -> None:
    with closed_port(host) as port:
        for _ in range(3):
            with pytest.raises(ConnectionRefusedError):
                socket.create_connection((host, port), timeout=5).close()


@pytest.mark.parametrize("reuse", [False, True])
@pytest.mark.parametrize("other_host", ["127.0.0.1", "0.0.0.0"])
def test_no_other_socket_can_take_it(reuse: bool, other_host: str) -> None:
    with closed_port() as port, socket.socket() as other:
        if reuse:
            other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        with pytest.raises(OSError, match="in use"):
            other.bind((other_host, port))


def test_the_port_is_free_again_after_the_block() -> None:
    with closed_port() as port:
        pass
    with socket.socket() as again:
        again.bind(("127.0.0.1", port))  # released: nothing keeps it


def test_the_reserved_socket_can_serve_there_later() -> None:
    with bound_socket() as sock:
        port = sock.getsockname()[1]
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=5).close()
        sock.listen()
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            pass


def test_the_fixture_is_refused(refused_port: int) -> None:
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", refused_port), timeout=5).close()


def test_no_test_counts_on_a_fixed_port_being_refused() -> None:
    # Port 1 or 9 of 127.0.0.1 as a URL or a quoted host:port (URL-parsing tables aside).
    fixed = re.compile(r"(https?://|[\"'(])127\.0\.0\.1:(1|9)(?![0-9])")
    offenders = [
        f"{path.relative_to(TESTS)}:{n}: {line.strip()}"
        for path in sorted(TESTS.rglob("*.py"))
        if path.name not in {"test_urls.py", "test_cli_sources.py", "test_closed_port.py"}
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if fixed.search(line)
    ]
    assert offenders == []
