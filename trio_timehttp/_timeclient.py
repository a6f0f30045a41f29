"""The RFC 868 time client: one reading over TCP or UDP, a precise reading, many sources.

Every call has one total deadline (resolve + connect + read, and all probes of
a precise reading), done with one cancel scope, so an outer cancel scope works
as usual. Errors are mapped once, at the edge: ``OSError`` -> ``ConnectError``,
short reply -> ``TimeProtocolError``, expiry -> ``Timeout``; ``Cancelled`` is
never caught.
"""

from __future__ import annotations

import logging
import math
import os
import socket
import struct
import time
from collections.abc import Iterable
from dataclasses import dataclass

import trio

from ._errors import ConnectError, InvalidURL, TimeHTTPError, Timeout, TimeProtocolError
from ._hostchars import forbidden_char
from ._probing import refine
from ._rfc868 import MIN_NOW, decode_time
from ._sample import OffsetEstimator, Reading, TimeSample, plain_sample

__all__ = ["query_many", "query_time"]

#: Default total deadlines: a plain reading, and a precise one (its probes
#: must fall in successive seconds of the server's clock).
DEFAULT_TIMEOUT = 5.0
DEFAULT_PRECISE_TIMEOUT = 15.0

#: A UDP datagram unanswered after a few round trips is sent once more: the
#: round trip is assumed before any answer (a long path), and never less
#: than MIN_RETRANSMIT (a busy server's queue). Not half the deadline: one
#: lost datagram must not cost seconds.
RETRANSMIT_RTTS = 3.0
ASSUMED_RTT = 0.25
MIN_RETRANSMIT = 0.2

log = logging.getLogger("trio_timehttp.timeclient")

#: Bytes read per receive: the first 4 count, more are read only so that a
#: chatty server (inetutils sends 8) gets a clean close rather than a reset.
_RECV_SIZE = 1024
#: A local UDP port a reading used is not given to another reading's socket
#: in this Trio run for this long (seconds): an RFC 868 answer carries no
#: identifier, so a late or duplicated answer to an old socket would pass
#: for the answer to a new one on the same port, and cut the interval in
#: the wrong place. Ports the kernel hands out again sooner are refused and
#: another is asked for (``_PORT_TRIES`` times, then taken, logged).
PORT_QUARANTINE = 3.0
_PORT_TRIES = 8
_recent_ports: trio.lowlevel.RunVar[dict[int, float]] = trio.lowlevel.RunVar(
    "trio_timehttp.recent_udp_ports"
)


#: Where a reading went: (address family, socket address). Later probes of a
#: precise reading go straight there (no DNS or Happy Eyeballs in the timing).
_Address = tuple[int, tuple[object, ...]]


def _split_host(host: str, port: int) -> tuple[str, int]:
    """``"name"``, ``"name:port"``, ``"[v6]:port"``, ``"[v6]"`` or a bare IPv6 literal.

    A port inside ``host`` wins over the ``port`` argument. An unusable
    host or port raises ``ConnectError`` (the address cannot be reached as
    given; it keeps every failure to reach a source in one exception type).
    """
    scheme = _scheme(host)
    if scheme is not None:
        raise ConnectError(
            f"unsupported scheme {scheme!r} in {host!r}: give a host[:port], or an http:// or "
            "https:// URL to query_http_time"
        )
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
    if "%" in name:
        raise ConnectError(f"IPv6 zone IDs are not supported: {host!r}")
    bad = forbidden_char(name)  # getaddrinfo's numeric parse would drop it silently
    if bad is not None:
        raise ConnectError(f"malformed host {host!r}: {bad} is not allowed in a host name")
    if port_text:
        if not (port_text.isascii() and port_text.isdigit()):
            raise ConnectError(f"malformed port {port_text!r} in {host!r}")
        digits = port_text.lstrip("0") or "0"  # leading zeros allowed, as in a URL
        if len(digits) > 5:  # out of range, and never int() of 5,000 digits (ValueError)
            raise ConnectError(f"port {port_text} of {name!r} is out of range (1-65535)")
        port = int(digits)
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
    except (OSError, UnicodeError) as exc:
        # UnicodeError (idna's errors among them): a name that cannot be
        # encoded for DNS at all (a snowman, a 64-character label, a joiner).
        raise ConnectError(f"cannot resolve {label}: {_words(exc)}") from exc
    if not infos:  # pragma: no cover - getaddrinfo raises rather than return nothing
        raise ConnectError(f"cannot resolve {label}: no addresses")
    return [(int(family), tuple(sockaddr)) for family, _, _, _, sockaddr in infos]


# --------------------------------------------------------------------------
# TCP


def _words(exc: BaseException) -> str:
    """An OS error's cause in words ("Connection refused"), without Trio's address repr."""
    if isinstance(exc, OSError) and isinstance(exc.errno, int) and exc.errno > 0:
        return os.strerror(exc.errno)
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc)


def _reason(exc: OSError) -> str:
    """Why a connect failed: open_tcp_stream's own message hides the per-address causes."""
    cause = exc.__cause__
    if isinstance(cause, BaseExceptionGroup):
        reasons: list[str] = []
        for leaf in cause.exceptions:
            text = _words(leaf)
            if text not in reasons:
                reasons.append(text)
        return "; ".join(reasons)
    return _words(exc)


#: ``struct tcp_info`` (linux/tcp.h): the classic 104-byte layout, ``tcpi_rtt``
#: (smoothed RTT, microseconds) at byte 68. Right after ``connect()`` it holds
#: the one sample taken so far: SYN sent -> SYN-ACK received.
_TCP_INFO_SIZE = 104
_TCPI_RTT = struct.Struct("=I")
_TCPI_RTT_OFFSET = 68


def _syn_rtt(sock: trio.socket.SocketType, connect_took: float) -> float:
    """The kernel-measured SYN round trip of a just-connected socket; 0.0 when unknown.

    The server's handshake completes only after our ACK reached it, and we
    send that ACK once the SYN-ACK is in: so the server cannot read its clock
    for this connection before ``connect() called + SYN round trip`` (our SYN
    left after the call). A value the kernel did not measure on this very
    handshake would break that, so anything over the time ``connect()`` took
    us is refused (0.0: the safe, wider bound), as is any platform without
    ``TCP_INFO``.
    """
    option = getattr(socket, "TCP_INFO", None)
    if option is None:  # pragma: no cover - Linux has it
        return 0.0
    try:
        info = sock.getsockopt(socket.IPPROTO_TCP, option, _TCP_INFO_SIZE)
    except OSError:  # pragma: no cover - a connected TCP socket answers
        return 0.0
    if len(info) < _TCPI_RTT_OFFSET + _TCPI_RTT.size:  # pragma: no cover
        return 0.0
    (rtt_us,) = _TCPI_RTT.unpack_from(info, _TCPI_RTT_OFFSET)
    rtt = rtt_us / 1e6
    return rtt if rtt <= connect_took else 0.0


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


async def _open_tcp(name: str, port: int, address: _Address | None) -> trio.SocketStream:
    if address is None:
        return await trio.open_tcp_stream(name, port)
    family, sockaddr = address
    sock = trio.socket.socket(family, socket.SOCK_STREAM)
    try:
        await sock.connect(sockaddr)
    except BaseException:
        sock.close()
        raise
    return trio.SocketStream(sock)


async def _tcp_reading(
    name: str, port: int, label: str, address: _Address | None
) -> tuple[Reading, _Address]:
    """One reading over a new connection: to ``address``, or by name (Happy Eyeballs)."""
    issued = time.time()  # before connect: nothing of ours has left yet
    try:
        stream = await _open_tcp(name, port, address)
    except (OSError, UnicodeError) as exc:
        reason = _reason(exc) if isinstance(exc, OSError) else str(exc)
        raise ConnectError(f"cannot connect to {label}: {reason}") from exc
    async with stream:
        syn = _syn_rtt(stream.socket, time.time() - issued)
        try:
            peer = stream.socket.getpeername()
        except OSError as exc:  # reset between connect and here
            raise ConnectError(f"connection to {label} lost: {_words(exc)}") from exc
        data, end = await _read_tcp(stream, label)
    second = _decode(data, label)
    reading = Reading(second, issued=issued, start=issued + syn, end=end, rtt=end - issued)
    return reading, (int(stream.socket.family), tuple(peer))


# --------------------------------------------------------------------------
# UDP


def _same_address(a: tuple[object, ...], b: tuple[object, ...]) -> bool:
    # IPv6 tuples carry flowinfo and scope id; host and port decide.
    return a[:2] == b[:2]


@dataclass(frozen=True, slots=True)
class _Resend:
    """When an unanswered datagram is sent again: ``after`` s, then ``backoff`` times longer
    each time (at most ``cap`` s apart), ``times`` times in all on one address.

    The first window without an answer also moves on to the next address.
    """

    after: float
    times: float = 1
    backoff: float = 2.0
    cap: float = 2.0


@dataclass(slots=True)
class _Answer:
    data: bytes
    first: float  # the first datagram sent from the socket that got the answer
    end: float
    address: _Address


def _quarantine() -> dict[int, float]:
    try:
        return _recent_ports.get()
    except LookupError:
        recent: dict[int, float] = {}
        _recent_ports.set(recent)
        return recent


async def _fresh_udp_socket(family: int) -> trio.socket.SocketType:
    """A UDP socket bound to a local port no reading of this run used in ``PORT_QUARANTINE``.

    Raises ``OSError`` (no descriptor, no port). Closes what it does not return.
    """
    recent, now = _quarantine(), trio.current_time()
    if len(recent) > 4096:
        for port in [p for p, until in recent.items() if until <= now]:
            del recent[port]
    wildcard = "::" if family == socket.AF_INET6 else "0.0.0.0"
    for attempt in range(1, _PORT_TRIES + 1):
        sock = trio.socket.socket(family, socket.SOCK_DGRAM)
        try:
            await sock.bind((wildcard, 0))
            port = sock.getsockname()[1]
        except BaseException:
            sock.close()
            raise
        if recent.get(port, -math.inf) <= now or attempt == _PORT_TRIES:
            if attempt == _PORT_TRIES:
                log.debug("udp port %d reused within %.1f s: no fresh one", port, PORT_QUARANTINE)
            recent[port] = now + PORT_QUARANTINE
            return sock
        sock.close()
    raise AssertionError("unreachable")  # pragma: no cover


class _UDPRace:
    """The addresses of one reading, tried in turn; the first answer from the right source wins.

    Each address has its own connected socket, so an answer on it can only be
    to a datagram sent from it: the interval starts at that socket's first
    datagram (never another address's, nor a retransmit).
    """

    def __init__(self, resend: _Resend | None) -> None:
        self.resend = resend
        self.answer: _Answer | None = None
        self.errors: list[tuple[str, OSError]] = []

    async def run(self, addresses: list[_Address]) -> None:
        async with trio.open_nursery() as nursery:
            for address in addresses:
                moved_on = trio.Event()
                nursery.start_soon(self._attempt, address, moved_on, nursery.cancel_scope)
                await moved_on.wait()

    async def _attempt(
        self, address: _Address, moved_on: trio.Event, won: trio.CancelScope
    ) -> None:
        """Ask one address; sets ``moved_on`` when the next address should be tried."""
        family, sockaddr = address
        try:
            # Inside the try: running out of descriptors (EMFILE) is a ConnectError too.
            sock = await _fresh_udp_socket(family)
        except OSError as exc:
            self.errors.append((f"no socket: {_words(exc)}", exc))
            moved_on.set()
            return
        with sock:
            try:
                await sock.connect(sockaddr)
                first = time.time()
                await sock.send(b"")
                data, end = await self._listen(sock, sockaddr, moved_on)
            except OSError as exc:
                self.errors.append((_words(exc), exc))
                moved_on.set()
                return
        if self.answer is None:  # two answers in one scheduling batch: the first wins
            self.answer = _Answer(data, first, end, address)
        won.cancel()

    async def _listen(
        self, sock: trio.socket.SocketType, sockaddr: tuple[object, ...], moved_on: trio.Event
    ) -> tuple[bytes, float]:
        """Until an answer from ``sockaddr`` arrives, resending as ``resend`` says."""
        resend, sent = self.resend, 1
        wait = math.inf if resend is None else resend.after
        while True:
            with trio.move_on_at(trio.current_time() + wait):
                while True:
                    data, source = await sock.recvfrom(_RECV_SIZE)
                    if _same_address(tuple(source), sockaddr):
                        return data, time.time()
            # Lost, ours or its answer: try the next address, and ask again.
            moved_on.set()
            assert resend is not None  # an infinite wait never ends here
            if sent > resend.times:
                wait = math.inf
                continue
            await sock.send(b"")
            sent += 1
            wait = min(wait * resend.backoff, resend.cap)


async def _udp_reading(
    name: str, port: int, label: str, address: _Address | None, resend: _Resend | None
) -> tuple[Reading, _Address]:
    """One reading: an empty datagram to each address in turn, resent as ``resend`` says.

    ``address=None``: every address the name resolves to, one after another
    (a refusal, or no answer within the first window, moves on; the earlier
    ones keep listening). ``resend=None``: never resend (a precise probe is
    rather abandoned: a late answer would only widen it). Each socket is
    connected, so the kernel drops datagrams from any other address and
    reports ICMP "port unreachable" as ECONNREFUSED; we still check the
    source of what arrives. The interval and ``rtt`` start at the first
    datagram sent to the address that answered: a late answer to it may
    arrive after a retransmit.
    """
    if address is None:
        resolved = await _resolve(name, port, socket.SOCK_DGRAM, label)
        addresses = list(dict.fromkeys(resolved))  # in order, once each
    else:
        addresses = [address]
    race = _UDPRace(resend)
    await race.run(addresses)
    answer = race.answer
    if answer is None:
        reasons = "; ".join(dict.fromkeys(reason for reason, _ in race.errors))
        cause = race.errors[-1][1] if race.errors else None
        raise ConnectError(f"no time service at {label} (udp): {reasons}") from cause
    second = _decode(answer.data, label)
    first, end = answer.first, answer.end
    return Reading(second, issued=first, start=first, end=end, rtt=end - first), answer.address


# --------------------------------------------------------------------------
# public


class _RFC868Prober:
    """Precise mode's later probes: straight to the address the first reading used."""

    channels: int | None = None  # each probe has its own socket

    def __init__(self, name: str, port: int, label: str, udp: bool, address: _Address) -> None:
        self.name, self.port, self.label = name, port, label
        self.udp, self.address = udp, address

    async def probe(self) -> Reading:
        if self.udp:
            reading, _ = await _udp_reading(self.name, self.port, self.label, self.address, None)
        else:
            reading, _ = await _tcp_reading(self.name, self.port, self.label, self.address)
        return reading


def _first_resend(precise: bool) -> _Resend:
    """After a few assumed round trips, never under ``MIN_RETRANSMIT``: once for a plain reading;
    for a precise one's first reading, again and again (backing off) until the deadline.
    """
    after = max(RETRANSMIT_RTTS * ASSUMED_RTT, MIN_RETRANSMIT)
    return _Resend(after, times=math.inf if precise else 1)


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
    one deadline over everything. Raises ``ConnectError`` (unresolvable or
    unencodable name, refused, unreachable, out of sockets, or an unusable
    host/port string), ``Timeout`` (no answer in time) or
    ``TimeProtocolError`` (fewer than 4 bytes). A UDP datagram unanswered
    after ``max(3 x 0.25 s, 0.2 s)`` is sent once more (precise: until the deadline).

    The sample is the midpoint and half-width of the interval the reading
    proves. ``precise=True`` (default ``False``) adds rounds of probes timed
    so that the server's second ticks over during them, until the interval
    is about as narrow as the fastest round trip allows; if the deadline
    passes after the first reading, the estimate so far is returned.
    ``port`` defaults to ``37``, ``udp`` to ``False`` (TCP). Every socket it
    opens is closed before it returns or raises.
    """
    name, port = _split_host(host, port)
    label = _label(name, port)
    protocol = "udp" if udp else "tcp"
    if timeout is None:
        timeout = DEFAULT_PRECISE_TIMEOUT if precise else DEFAULT_TIMEOUT
    est = OffsetEstimator()
    with trio.move_on_after(timeout):
        if udp:
            first, address = await _udp_reading(name, port, label, None, _first_resend(precise))
        else:
            first, address = await _tcp_reading(name, port, label, None)
        if not precise:
            return plain_sample(name, port, protocol, first)
        est.add(first)
        await refine(_RFC868Prober(name, port, label, udp, address), est)
    if not est.readings:
        raise Timeout(f"no answer from {label} ({protocol}) within {timeout:g} s")
    return est.sample(name, port, protocol)


def _scheme(source: str) -> str | None:
    """The scheme of a source written as a URL (``"htp://x"`` -> ``"htp"``), else None."""
    head, sep, _ = source.partition("://")
    if sep and head and all(c.isascii() and (c.isalnum() or c in "+-.") for c in head):
        return head.lower()
    return None


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
    ``query_http_time`` (``proxy``/``trust_env`` apply); any other
    ``scheme://`` is an ``InvalidURL`` in its slot; the others are RFC 868
    hosts (``port``/``udp`` apply; never proxied). A failed source yields its
    ``TimeHTTPError`` in its place (never an ``ExceptionGroup``: the other
    results survive); each has its own deadline, so a dead one never delays
    the rest past it. Defaults: ``port=37``, ``udp=False``, ``timeout=None``
    (each source's own default, as for ``query_time`` / ``query_http_time``),
    ``precise=False``, ``proxy=None``, ``trust_env=True``. Cancelling the
    call cancels every query; no socket is left open.
    """
    from ._httptime import query_http_time

    source_list = list(sources)
    results: list[TimeSample | TimeHTTPError | None] = [None] * len(source_list)

    async def one(index: int, source: str) -> None:
        try:
            scheme = _scheme(source)
            if scheme in ("http", "https"):
                results[index] = await query_http_time(
                    source, timeout=timeout, precise=precise, proxy=proxy, trust_env=trust_env
                )
            elif scheme is not None:
                raise InvalidURL(
                    f"unsupported scheme {scheme!r} in {source!r} (use a host[:port], "
                    "or an http:// or https:// URL)"
                )
            else:
                results[index] = await query_time(
                    source, port, udp=udp, timeout=timeout, precise=precise
                )
        except TimeHTTPError as exc:
            results[index] = exc
        except Exception as exc:  # one bad source must not take the others down
            # A bug of ours, not the source's fault: keep it visible in the
            # log, and still give the caller one error in this slot.
            log.warning("unexpected error reading %s", source, exc_info=True)
            error = TimeHTTPError(f"{source}: unexpected {type(exc).__name__}: {exc}")
            error.__cause__ = exc
            results[index] = error

    async with trio.open_nursery() as nursery:
        for index, source in enumerate(source_list):
            nursery.start_soon(one, index, source)
    done: list[TimeSample | TimeHTTPError] = []
    for result in results:
        assert result is not None  # every task stored something or raised
        done.append(result)
    return done
