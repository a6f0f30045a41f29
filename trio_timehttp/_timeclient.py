"""The RFC 868 time client: one reading over TCP or UDP, a precise reading, many sources.

Every call has one total deadline (resolve + connect + read, and all probes of
a precise reading), done with one cancel scope, so an outer cancel scope works
as usual. Errors are mapped once, at the edge: ``OSError`` -> ``ConnectError``,
short reply -> ``TimeProtocolError``, expiry -> ``Timeout``; ``Cancelled`` is
never caught.
"""

from __future__ import annotations

import math
import socket
import time
from collections.abc import Iterable

import trio

from ._errors import ConnectError, TimeHTTPError, Timeout, TimeProtocolError
from ._probing import Reading, precise_sample, refine
from ._rfc868 import MIN_NOW, decode_time
from ._sample import OffsetEstimator, TimeSample, plain_sample

__all__ = ["query_many", "query_time"]

#: Default total deadlines: a plain reading, and a precise one (its probes
#: must fall in successive seconds of the server's clock).
DEFAULT_TIMEOUT = 5.0
DEFAULT_PRECISE_TIMEOUT = 15.0

#: Bytes read per receive: the first 4 count, more are read only so that a
#: chatty server (inetutils sends 8) gets a clean close rather than a reset.
_RECV_SIZE = 1024


#: Where a reading went: (address family, socket address). Later probes of a
#: precise reading go straight there (no DNS or Happy Eyeballs in the timing).
_Address = tuple[int, tuple[object, ...]]


def _split_host(host: str, port: int) -> tuple[str, int]:
    """``"name"``, ``"name:port"``, ``"[v6]:port"``, ``"[v6]"`` or a bare IPv6 literal.

    A port inside ``host`` wins over the ``port`` argument. An unusable
    host or port raises ``ConnectError`` (the address cannot be reached as
    given; it keeps every failure to reach a source in one exception type).
    """
    name, port_text = host, ""
    if host.startswith("["):
        inside, bracket, rest = host[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            raise ConnectError(f"malformed host {host!r} (expected [IPv6]:port)")
        name, port_text = inside, rest[1:]
        if rest and not port_text:
            raise ConnectError(f"malformed host {host!r}: empty port")
    elif host.count(":") == 1:
        name, _, port_text = host.partition(":")
        if not port_text:
            raise ConnectError(f"malformed host {host!r}: empty port")
    if not name:
        raise ConnectError(f"malformed host {host!r}: empty name")
    if port_text:
        if not (port_text.isascii() and port_text.isdigit()):
            raise ConnectError(f"malformed port {port_text!r} in {host!r}")
        port = int(port_text)
    if not 0 < port < 65536:
        raise ConnectError(f"port {port} of {name!r} is out of range (1-65535)")
    return name, port


def _label(name: str, port: int) -> str:
    return f"[{name}]:{port}" if ":" in name else f"{name}:{port}"


def _decode(data: bytes, label: str) -> int:
    if len(data) < 4:
        raise TimeProtocolError(f"{label} sent {len(data)} byte(s); an RFC 868 time is 4 bytes")
    # The era nearest our clock at receipt, but never before MIN_NOW (see
    # _rfc868: a clock reset to 1970 must still decode post-2036 replies).
    return decode_time(data[:4], now=max(time.time(), MIN_NOW))


async def _resolve(
    name: str, port: int, kind: int, label: str
) -> list[tuple[int, tuple[object, ...]]]:
    try:
        infos = await trio.socket.getaddrinfo(name, port, type=kind)
    except OSError as exc:
        raise ConnectError(f"cannot resolve {label}: {exc}") from exc
    if not infos:  # pragma: no cover - getaddrinfo raises rather than return nothing
        raise ConnectError(f"cannot resolve {label}: no addresses")
    return [(int(family), tuple(sockaddr)) for family, _, _, _, sockaddr in infos]


# --------------------------------------------------------------------------
# TCP


def _reason(exc: OSError) -> str:
    """Why a connect failed: open_tcp_stream's own message hides the per-address causes."""
    cause = exc.__cause__
    if isinstance(cause, BaseExceptionGroup):
        reasons: list[str] = []
        for leaf in cause.exceptions:
            text = leaf.strerror if isinstance(leaf, OSError) and leaf.strerror else str(leaf)
            if text not in reasons:
                reasons.append(text)
        return "; ".join(reasons)
    return exc.strerror or str(exc)


async def _read_tcp(stream: trio.SocketStream, label: str) -> tuple[bytes, float]:
    """Read until 4 bytes or EOF; return the bytes and the local time the 4th arrived."""
    data = b""
    while len(data) < 4:
        try:
            chunk = await stream.receive_some(_RECV_SIZE)
        except trio.BrokenResourceError as exc:
            raise TimeProtocolError(
                f"{label} broke the connection after {len(data)} byte(s): {exc.__cause__ or exc}"
            ) from exc
        if not chunk:
            break
        data += chunk
    return data, time.time()


async def _tcp_reading(
    name: str, port: int, label: str, address: _Address | None
) -> tuple[Reading, _Address]:
    """One reading over a new connection: to ``address``, or by name (Happy Eyeballs)."""
    begin = time.time()
    try:
        if address is None:
            stream = await trio.open_tcp_stream(name, port)
        else:
            family, sockaddr = address
            sock = trio.socket.socket(family, socket.SOCK_STREAM)
            try:
                await sock.connect(sockaddr)
            except BaseException:
                sock.close()
                raise
            stream = trio.SocketStream(sock)
    except OSError as exc:
        raise ConnectError(f"cannot connect to {label}: {_reason(exc)}") from exc
    async with stream:
        connected = time.time()
        try:
            peer = stream.socket.getpeername()
        except OSError as exc:  # reset between connect and here
            raise ConnectError(f"connection to {label} lost: {exc}") from exc
        data, end = await _read_tcp(stream, label)
    second = _decode(data, label)
    return Reading(second, start=begin, sent=connected, end=end), (
        int(stream.socket.family),
        tuple(peer),
    )


# --------------------------------------------------------------------------
# UDP


def _same_address(a: tuple[object, ...], b: tuple[object, ...]) -> bool:
    # IPv6 tuples carry flowinfo and scope id; host and port decide.
    return a[:2] == b[:2]


async def _udp_reading(
    name: str,
    port: int,
    label: str,
    address: _Address | None,
    retransmit_at: float,
) -> tuple[Reading, _Address]:
    """One reading: an empty datagram, one retransmit at ``retransmit_at`` (Trio time).

    The socket is connected, so the kernel drops datagrams from any other
    address and reports ICMP "port unreachable" as ECONNREFUSED; we still
    check the source of what arrives.
    """
    if address is None:
        address = (await _resolve(name, port, socket.SOCK_DGRAM, label))[0]
    family, sockaddr = address
    with trio.socket.socket(family, socket.SOCK_DGRAM) as sock:
        try:
            await sock.connect(sockaddr)
            first = sent = time.time()
            await sock.send(b"")
            retransmitted = False
            while True:
                with trio.move_on_at(math.inf if retransmitted else retransmit_at):
                    data, source = await sock.recvfrom(_RECV_SIZE)
                    end = time.time()
                    if _same_address(tuple(source), sockaddr):
                        break
                    continue
                # No reply by half the deadline: the datagram or its answer
                # may have been lost; ask once more.
                retransmitted = True
                sent = time.time()
                await sock.send(b"")
        except OSError as exc:
            raise ConnectError(f"no time service at {label} (udp): {exc}") from exc
    second = _decode(data, label)
    # A late answer to the first datagram may arrive after the retransmit:
    # the interval maths must start at the first send to stay correct.
    return Reading(second, start=first, sent=sent, end=end), address


# --------------------------------------------------------------------------
# public


async def _reading(
    name: str,
    port: int,
    label: str,
    udp: bool,
    address: _Address | None,
    deadline: float,
) -> tuple[Reading, _Address]:
    if udp:
        now = trio.current_time()
        return await _udp_reading(name, port, label, address, now + (deadline - now) / 2)
    return await _tcp_reading(name, port, label, address)


async def query_time(
    host: str,
    port: int = 37,
    *,
    udp: bool = False,
    timeout: float | None = None,
    precise: bool = False,
) -> TimeSample:
    """Read an RFC 868 server's clock and measure its offset from ours.

    ``host`` is ``"name"``, ``"name:port"`` or ``"[v6]:port"`` (a port there
    wins over ``port``). ``timeout`` (default 5 s, 15 s if ``precise``) is
    one deadline over everything. Raises ``ConnectError`` (unresolvable,
    refused, unreachable, or an unusable host/port string), ``Timeout`` (no
    answer in time) or ``TimeProtocolError`` (fewer than 4 bytes).

    ``precise=True`` takes up to 8 readings timed so the server's second
    ticks over during them, and returns the intersection of their offset
    intervals (``uncertainty`` is its half-width, usually a few ms). If the
    deadline passes after at least one reading, the estimate so far is returned.
    """
    name, port = _split_host(host, port)
    label = _label(name, port)
    if timeout is None:
        timeout = DEFAULT_PRECISE_TIMEOUT if precise else DEFAULT_TIMEOUT
    estimator = OffsetEstimator()
    readings: list[Reading] = []
    with trio.move_on_after(timeout) as scope:
        if not precise:
            reading, _ = await _reading(name, port, label, udp, None, scope.deadline)
            return plain_sample(name, port, reading.second, reading.sent, reading.end)
        address: _Address | None = None

        async def probe() -> Reading:
            # Each probe gets the rest of the deadline; a UDP probe's
            # retransmit comes at half of what is left of it.
            nonlocal address
            reading, address = await _reading(name, port, label, udp, address, scope.deadline)
            return reading

        await refine(probe, estimator, readings)
    if not readings:
        raise Timeout(f"no answer from {label} ({'udp' if udp else 'tcp'}) within {timeout:g} s")
    return precise_sample(name, port, estimator, readings)


async def query_many(
    sources: Iterable[str],
    port: int = 37,
    *,
    udp: bool = False,
    timeout: float | None = None,
    precise: bool = False,
    proxy: str | None = None,
    trust_env: bool = True,
) -> list[TimeSample | TimeHTTPError]:
    """Query every source at once (one task each, one nursery); results in the order given.

    A source starting with ``http://`` or ``https://`` is read with
    ``query_http_time`` (``proxy``/``trust_env`` apply); the others are
    RFC 868 hosts (``port``/``udp`` apply; never proxied). A failed source
    yields its ``TimeHTTPError`` in its place; each has its own deadline, so
    a dead one never delays the rest past it.
    """
    from ._httptime import query_http_time

    source_list = list(sources)
    results: list[TimeSample | TimeHTTPError | None] = [None] * len(source_list)

    async def one(index: int, source: str) -> None:
        try:
            if source.lower().startswith(("http://", "https://")):
                results[index] = await query_http_time(
                    source, timeout=timeout, precise=precise, proxy=proxy, trust_env=trust_env
                )
            else:
                results[index] = await query_time(
                    source, port, udp=udp, timeout=timeout, precise=precise
                )
        except TimeHTTPError as exc:
            results[index] = exc

    async with trio.open_nursery() as nursery:
        for index, source in enumerate(source_list):
            nursery.start_soon(one, index, source)
    done: list[TimeSample | TimeHTTPError] = []
    for result in results:
        assert result is not None  # every task stored something or raised
        done.append(result)
    return done
