"""Reading a web server's clock from its ``Date`` header, as htpdate does.

A ``HEAD`` request (``GET`` when HEAD is refused or carries no Date) through
our own requester, following no redirects: the first response's Date is that
server's clock, whatever its status. Precise mode takes more readings on a
few keep-alive connections, timed to cut the server's second (``_probing``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import time

import trio

from ._errors import ProtocolError, Timeout
from ._http import Client
from ._httpdate import parse_http_date
from ._models import Response
from ._probing import refine
from ._proxy import ProxyPolicy
from ._sample import OffsetEstimator, Reading, TimeSample, plain_sample
from ._shown import shown
from ._timing import ExchangeTimes
from ._urls import parse_url

__all__ = ["query_http_time"]

log = logging.getLogger("trio_timehttp.httptime")

DEFAULT_TIMEOUT = 10.0
DEFAULT_PRECISE_TIMEOUT = 15.0

#: A GET fallback reads at most this much of the body before dropping the
#: connection: we want the head, not the page.
_MAX_GET_BODY = 64 * 1024

#: Precise mode keeps at most this many connections to the server, so that
#: probes aimed at instants closer together than a round trip can overlap.
HTTP_CHANNELS = 6

#: How many answers from a cache (``Age``) the first reading tolerates.
_STALE_TRIES = 3


class _EnoughBody(Exception):
    """Raised from our own consumer to stop reading a GET body we do not need."""


class _DateConsumer:
    """Keeps the response head; bounds a GET body we do not need."""

    def __init__(self) -> None:
        self.response: Response | None = None
        self.size = 0

    def http_header(self, response: Response) -> None:
        self.response = response

    def feed(self, data: bytes) -> None:
        self.size += len(data)
        if self.size > _MAX_GET_BODY:
            raise _EnoughBody

    def close(self) -> None:
        pass


class _Stale(Exception):
    """A response that came from a cache (it has ``Age``): its Date is not the origin's clock."""


async def _read_once(client: Client, url: str, method: str) -> tuple[Response, Reading | None]:
    """One request: the response, and the reading its Date gives (None without a Date).

    The requester fills ``ExchangeTimes``: ``start`` before it connects (a
    new connection's handshake is inside the interval: a busy scheduler
    cannot push the start past the server's read) or, on a reused
    connection, before the first byte is sent; ``head`` when the head was
    complete. ``rtt`` runs from the request sent to the head received.
    Raises ``_Stale`` for a cached answer.
    """
    times = ExchangeTimes()
    consumer = _DateConsumer()
    with contextlib.suppress(_EnoughBody):
        await client._fetch_timed(url, consumer, method=method, times=times)
    response = consumer.response
    assert response is not None  # fetch raised otherwise
    if "age" in response.headers:
        raise _Stale(response.headers["age"])
    if "date" not in response.headers:
        return response, None
    second = _date_of(response, url)
    end = times.head
    # From the request sent; on a reused connection ``start`` is that instant
    # taken just before the bytes went out (``sent`` comes after the send
    # call returned, which a busy scheduler can delay past the answer).
    rtt = end - (times.start if times.reused else times.sent or times.start)
    return response, Reading(second, issued=times.start, start=times.start, end=end, rtt=rtt)


def _no_date(response: Response, url: str) -> ProtocolError:
    return ProtocolError(f"{url}: the response ({response.status_code}) has no Date header")


def _date_of(response: Response, url: str) -> int:
    value = response.headers.get("date")
    if value is None:
        raise _no_date(response, url)
    try:
        return parse_http_date(value, now=time.time())
    except ValueError as exc:
        raise ProtocolError(f"{url}: unparsable Date header {shown(value)}") from exc


async def _first_reading(client: Client, url: str) -> tuple[str, Reading]:
    """HEAD, or GET when HEAD is refused (405/501) or answered without a Date.

    A cached answer (``Age``) is asked again, up to ``_STALE_TRIES`` times in
    all, despite our ``no-cache``; then it is a ``ProtocolError``.
    """
    method = "HEAD"
    for attempt in range(1, _STALE_TRIES + 1):
        try:
            response, reading = await _read_once(client, url, method)
            if response.status_code in (405, 501) or reading is None:
                log.debug("%s: HEAD gave %s without a Date; trying GET", url, response.status_code)
                method = "GET"
                response, reading = await _read_once(client, url, method)
        except _Stale as stale:
            log.debug("%s: answer %d came from a cache (Age: %s)", url, attempt, stale)
            if attempt == _STALE_TRIES:
                raise ProtocolError(
                    f"{url}: every answer came from a cache (Age: {stale}); its Date is not "
                    "the origin's clock"
                ) from None
            continue
        if reading is None:
            raise _no_date(response, url)
        return method, reading
    raise AssertionError("unreachable")  # pragma: no cover


class _HTTPProber:
    """Precise mode's later probes: the same method, on the Client's kept-alive connections."""

    def __init__(self, client: Client, url: str, method: str, channels: int) -> None:
        self.client, self.url, self.method = client, url, method
        self.channels: int | None = channels

    async def probe(self) -> Reading:
        try:
            response, reading = await _read_once(self.client, self.url, self.method)
        except _Stale as stale:
            raise ProtocolError(f"{self.url}: cached answer (Age: {stale}) skipped") from None
        if reading is None:
            raise _no_date(response, self.url)
        return reading


async def query_http_time(
    url: str,
    *,
    timeout: float | None = None,
    precise: bool = False,
    proxy: str | None = None,
    trust_env: bool = True,
) -> TimeSample:
    """Read a web server's clock from its ``Date`` header; offset = server - local.

    Sends ``HEAD url`` (falling back to ``GET`` on 405 or 501, or when the
    HEAD response has no ``Date``), follows no redirects (the first
    response's ``Date`` is that server's clock, whatever its status), and
    closes its connections before it returns or raises.
    ``timeout`` (default 10 s, 15 s if ``precise``) is one deadline over all
    of it. Raises ``InvalidURL``, ``ConnectError``, ``Timeout``, or
    ``ProtocolError`` when there is no usable ``Date`` (missing, unparsable,
    or only ever from a cache: requests say ``Cache-Control: no-cache`` and
    ``Pragma: no-cache``, and a response with ``Age`` is skipped). The sample
    is the midpoint and half-width of the interval the Date proves. With
    ``precise=True`` further requests are timed so the server's second ticks
    over during them: on at most 6 kept-alive connections to
    the server, or on one through a proxy (one CONNECT tunnel for https, as
    htpdate keeps one connection; a proxy is a shared resource). If the
    deadline passes after the first reading, the estimate so far is
    returned. ``proxy`` (default ``None``) and ``trust_env`` (default
    ``True``) as on ``Client``; the proxy hop is
    inside the measured round trip, so the uncertainty still holds.
    """
    target = parse_url(url)
    protocol = target.scheme
    if timeout is None:
        timeout = DEFAULT_PRECISE_TIMEOUT if precise else DEFAULT_TIMEOUT
    est = OffsetEstimator()
    headers = [("cache-control", "no-cache"), ("pragma", "no-cache")]
    proxied = ProxyPolicy.from_settings(proxy, trust_env, os.environ).choose(target)
    channels = HTTP_CHANNELS if proxied is None else 1
    client = Client(
        timeout=None,
        max_connections=channels,
        headers=headers,
        proxy=proxy,
        trust_env=trust_env,
    )
    async with client:
        with trio.move_on_after(timeout):
            method, first = await _first_reading(client, url)
            if not precise:
                return plain_sample(target.host, target.port, protocol, first)
            est.add(first)
            await refine(_HTTPProber(client, url, method, channels), est)
    if not est.readings:
        raise Timeout(f"no answer from {url} within {timeout:g} s")
    return est.sample(target.host, target.port, protocol)
