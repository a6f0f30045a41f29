"""Reading a web server's clock from its ``Date`` header, as htpdate does.

A ``HEAD`` request (``GET`` when HEAD is refused or carries no Date) through
our own requester, following no redirects: the first response's Date is that
server's clock, whatever its status. Precise mode takes more readings on the
same keep-alive connection, timed to bisect the server's second (``_probing``).
"""

from __future__ import annotations

import contextlib
import logging
import time

import trio

from ._errors import ProtocolError, Timeout
from ._http import Client
from ._httpdate import parse_http_date
from ._models import Response
from ._probing import Reading, precise_sample, refine
from ._sample import OffsetEstimator, TimeSample, plain_sample
from ._timing import ExchangeTimes
from ._urls import parse_url

__all__ = ["NO_CACHE", "query_http_time"]

# A cache on the way (a proxy's, or one in front of the origin) would answer
# with a stored response: its Date is when the origin made it, not now (squid
# adds an Age). RFC 9111 section 5.2.1.4 / 5.4: ask every cache to go to the
# origin (Pragma for HTTP/1.0 caches).
NO_CACHE = {"cache-control": "no-cache", "pragma": "no-cache"}

log = logging.getLogger("trio_timehttp.httptime")

DEFAULT_TIMEOUT = 10.0
DEFAULT_PRECISE_TIMEOUT = 15.0

#: A GET fallback reads at most this much of the body before dropping the
#: connection: we want the head, not the page.
_MAX_GET_BODY = 64 * 1024


class _EnoughBody(Exception):
    """Raised from our own consumer to stop reading a GET body we do not need."""


class _DateConsumer:
    """Notes when the request left and the head arrived, and what it said; bounds the body."""

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


async def _read_once(client: Client, url: str, method: str) -> tuple[Response, Reading | None]:
    """One request: the response, and the reading its Date gives (None without a Date).

    The server cannot have read its clock before our request began to leave,
    so ``start`` is taken before connecting or, on a reused connection, before
    the first byte is sent (``ExchangeTimes``); ``rtt`` runs from request sent
    to head received.
    """
    consumer = _DateConsumer()
    times = ExchangeTimes()
    with contextlib.suppress(_EnoughBody):
        await client._fetch_timed(url, consumer, method=method, times=times)
    response = consumer.response
    assert response is not None  # fetch raised otherwise
    if "date" not in response.headers:
        return response, None
    second = _date_of(response, url)
    return response, Reading(second, times.start, times.sent or times.start, times.head)


def _no_date(response: Response, url: str) -> ProtocolError:
    return ProtocolError(f"{url}: the response ({response.status_code}) has no Date header")


def _date_of(response: Response, url: str) -> int:
    value = response.headers.get("date")
    if value is None:
        raise _no_date(response, url)
    try:
        return parse_http_date(value, now=time.time())
    except ValueError as exc:
        raise ProtocolError(f"{url}: unparsable Date header {value!r}") from exc


async def _first_reading(client: Client, url: str) -> tuple[str, Reading]:
    """HEAD, or GET when HEAD is refused (405/501) or answered without a Date."""
    method = "HEAD"
    response, reading = await _read_once(client, url, method)
    if response.status_code in (405, 501) or reading is None:
        log.debug("%s: HEAD gave %s without a Date; trying GET", url, response.status_code)
        method = "GET"
        response, reading = await _read_once(client, url, method)
    if reading is None:
        raise _no_date(response, url)
    return method, reading


async def query_http_time(
    url: str,
    *,
    timeout: float | None = None,
    precise: bool = False,
    proxy: str | None = None,
    trust_env: bool = True,
) -> TimeSample:
    """Read a web server's clock from its ``Date`` header; offset = server - local.

    ``timeout`` (default 10 s, 15 s if ``precise``) is one deadline over all
    of it. Raises ``InvalidURL``, ``ConnectError``, ``Timeout``, or
    ``ProtocolError`` when there is no usable ``Date``. With ``precise=True``
    further HEAD (or GET) requests on the same connection bisect the server's
    second; if the deadline passes after the first reading, the estimate so
    far is returned. Every request asks caches not to answer from storage
    (``Cache-Control: no-cache``, ``Pragma: no-cache``). ``proxy`` and
    ``trust_env`` as on ``Client``: through a proxy the probes share one
    connection to it (one CONNECT tunnel for https), and the proxy hop is
    inside the measured round trip, so the uncertainty still holds.
    """
    target = parse_url(url)
    if timeout is None:
        timeout = DEFAULT_PRECISE_TIMEOUT if precise else DEFAULT_TIMEOUT
    estimator = OffsetEstimator()
    readings: list[Reading] = []
    client = Client(
        timeout=None, max_connections=1, headers=NO_CACHE, proxy=proxy, trust_env=trust_env
    )
    async with client:
        with trio.move_on_after(timeout):
            method, first = await _first_reading(client, url)
            readings.append(first)
            estimator.add(first.second, first.start, first.end)
            if not precise:
                return plain_sample(target.host, target.port, first.second, first.sent, first.end)

            async def probe() -> Reading:
                response, reading = await _read_once(client, url, method)
                if reading is None:
                    raise _no_date(response, url)
                return reading

            await refine(probe, estimator, readings)
    if not readings:
        raise Timeout(f"no answer from {url} within {timeout:g} s")
    return precise_sample(target.host, target.port, estimator, readings)
