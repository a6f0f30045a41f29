"""The redirect policy (pure) and the consumer wrapper that applies it.

``next_redirect`` decides, from a response and the request that got it,
whether to follow and with what request (RFC 9110 section 15.4: which
statuses, which method and body survive, which credentials may cross to
another origin). ``RedirectingConsumer`` wraps another consumer: its
``http_header`` either hands a response on or *returns the next*
``Request``; the requester drops the rest of the redirect response and
sends what it was given. No I/O, no Trio, no clock here.
"""

from __future__ import annotations

import logging
from typing import Any

from ._consumer import call_optional, maybe_await
from ._errors import InvalidURL, RedirectError, TooManyRedirects
from ._models import Request, Response
from ._urls import URL, parse_url, resolve_location

__all__ = [
    "REDIRECT_STATUSES",
    "RedirectingConsumer",
    "next_redirect",
]

logger = logging.getLogger("trio_timehttp.http")


REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})

# Credentials are meant for one origin: they never follow a redirect to another
# (RFC 9110 section 15.4; httpx and browsers do the same for Authorization/Cookie).
_CREDENTIAL_HEADERS = ("authorization", "cookie", "proxy-authorization")
# When a redirect turns the request into a GET without content, the fields
# that described that content go too (Fetch standard, "request-body-header name",
# plus the framing fields).
_BODY_HEADERS = (
    "content-type",
    "content-length",
    "transfer-encoding",
    "content-encoding",
    "content-language",
    "content-location",
)


def _location_text(value: str) -> str:
    """The Location as text: header values arrive as ISO-8859-1, URLs are UTF-8.

    A server that sends ``/café`` sends UTF-8 bytes, which a Latin-1 decode
    turns into ``/cafÃ©``; re-read them as UTF-8 so the URL layer can
    percent-encode the real characters. Bytes that are not UTF-8 are
    percent-encoded as they are.
    """
    try:
        raw = value.encode("latin-1")
    except UnicodeEncodeError:  # already real text (a Response built by hand)
        return value
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return "".join(chr(b) if b < 0x80 else f"%{b:02X}" for b in raw)


def next_redirect(
    response: Response, *, allow_downgrade: bool = False, strip_credentials: bool = False
) -> tuple[Request, bool] | None:
    """The request that follows ``response``, or None if it is not a redirect to follow.

    Returns ``(request, credentials_stripped)``; ``strip_credentials`` says an
    earlier hop already changed origin (credentials stay dropped for the rest
    of the chain). A 3xx without a ``Location``, or with an empty or
    whitespace-only one, is no redirect (None: the response is delivered as
    it is). Spaces in the Location's path or query are sent percent-encoded.
    The next request never carries the caller's ``Host``: the requester
    computes it for each hop. Pure: no counting, no I/O. Raises
    ``RedirectError`` for a Location that must not be followed.
    """
    if response.status_code not in REDIRECT_STATUSES:
        return None
    # Optional whitespace around a field value is not part of it (RFC 9110 5.5).
    locations = {value.strip(" \t") for value in response.headers.get_list("location")}
    if len(locations) > 1:
        raise RedirectError(
            f"conflicting Location fields in the {response.status_code} from "
            f"{response.url}: {sorted(locations)!r}"
        )
    if not locations or not (location := _location_text(locations.pop())):
        # A 3xx without a usable Location is an ordinary response (RFC 9110
        # 15.4); an empty one would resolve to the same URL and loop.
        return None
    request = response.request
    try:
        base = parse_url(response.url)
        if base.fragment is None:
            # The requester may report the URL without its fragment; the
            # fragment the caller asked for is still ours to inherit.
            base_fragment = parse_url(request.url).fragment
            if base_fragment is not None:
                base = URL(base.scheme, base.host, base.port, base.target, base_fragment)
        target = resolve_location(base, location)
    except InvalidURL as exc:
        raise RedirectError(
            f"cannot follow the {response.status_code} from {response.url} "
            f"to Location {location!r}: {exc}"
        ) from exc
    if base.scheme == "https" and target.scheme == "http" and not allow_downgrade:
        raise RedirectError(
            f"refusing to follow a redirect from https to http ({response.url} -> {target}); "
            "pass allow_downgrade=True to allow it"
        )

    method, body = request.method, request.body
    headers = request.headers.remove("host")  # the requester computes Host for each hop
    status = response.status_code
    if (status == 303 and method != "HEAD") or (status in (301, 302) and method == "POST"):
        # RFC 9110 15.4.4 (303: see other, with GET) and 15.4.2/15.4.3 (the
        # historic POST -> GET that every user agent does for 301/302).
        method, body = "GET", None
        headers = headers.remove(*_BODY_HEADERS)
    if strip_credentials or target.origin != base.origin:
        strip_credentials = True
        headers = headers.remove(*_CREDENTIAL_HEADERS)
    return Request(method, str(target), headers, body), strip_credentials


class RedirectingConsumer:
    """A consumer wrapper that follows redirects for the consumer it wraps.

    ``fetch(url, RedirectingConsumer(BytesConsumer()))`` follows the chain;
    it is written only with the public consumer protocol, so it is also the
    worked example of writing a wrapper of one's own. On 301, 302, 303, 307
    or 308 with a ``Location``, ``http_header`` returns the next ``Request``
    (the Location resolved against the current URL, RFC 3986) and the
    requester sends it (same deadline, same consumer); any other response,
    and a 3xx without a usable ``Location``, goes to the wrapped consumer.
    The wrapped consumer sees only the final response: ``http_header`` once,
    its body, ``close`` once (also when the chain fails).

    The next request: 303 turns any method but HEAD into GET without a
    body, 301 and 302 turn POST into GET without a body, 307 and 308 keep
    method and body. ``Authorization``, ``Cookie`` and
    ``Proxy-Authorization`` are dropped once the origin (scheme, host,
    port) changes, for the rest of the chain; ``Host`` is always
    recomputed. The fragment is kept when the Location has none.

    ``max_redirects`` (default ``10``): how many redirects are followed; one
    more raises ``TooManyRedirects`` (so ``0`` raises on the first).
    ``allow_downgrade`` (default ``False``): whether an https URL may
    redirect to http. Raises ``RedirectError`` for a Location with control
    characters or spaces, an unusable host or port, a scheme other than
    http and https, several different ``Location`` fields, or an https to
    http hop without ``allow_downgrade``. Before either error is raised the
    wrapped consumer gets ``http_header`` with a failure ``Response``
    (``status_code`` None, ``error`` set), as for a failed connection.
    ``ValueError`` at construction for a negative ``max_redirects``.

    ``.redirects`` counts the redirects followed so far; ``.consumer`` is
    the wrapped consumer. One instance follows one chain. The methods are
    ``async`` and await the wrapped consumer's methods when those are
    ``async`` too, so plain and async consumers both work.
    """

    def __init__(
        self, consumer: Any, *, max_redirects: int = 10, allow_downgrade: bool = False
    ) -> None:
        if max_redirects < 0:
            raise ValueError(f"max_redirects must be >= 0, not {max_redirects}")
        self.consumer = consumer
        self.max_redirects = max_redirects
        self.allow_downgrade = allow_downgrade
        self.redirects = 0
        self._strip_credentials = False
        self._visited: set[tuple[str, str]] = set()
        self._last: Response | None = None
        self._delivered = False
        self._closed = False

    async def http_header(self, response: Response) -> Request | None:
        """Return the next ``Request`` for a redirect; hand any other response on.

        For a response that is not a redirect to follow (or a failure
        ``Response`` of a later hop), calls the wrapped consumer's
        ``http_header`` (if it has one) and returns None, or the
        ``Request`` that consumer returns, should it be a wrapper too.
        Raises ``TooManyRedirects`` or ``RedirectError`` as the class says,
        after telling the wrapped consumer.
        """
        self._last = response
        if response.status_code is None:  # a later hop failed to connect
            return await self._deliver(response)
        try:
            step = next_redirect(
                response,
                allow_downgrade=self.allow_downgrade,
                strip_credentials=self._strip_credentials,
            )
            if step is not None and self.redirects >= self.max_redirects:
                seen = (response.request.method, response.request.url.partition("#")[0])
                loop = f"; a loop ({seen[1]} again)" if seen in self._visited else ""
                raise TooManyRedirects(
                    f"more than {self.max_redirects} redirects, last from {response.url} "
                    f"({response.status_code}){loop}"
                )
        except (RedirectError, TooManyRedirects) as exc:
            await self._fail(response, exc)
            raise
        if step is None:
            return await self._deliver(response)
        request, self._strip_credentials = step
        self.redirects += 1
        self._visited.add((response.request.method, response.request.url.partition("#")[0]))
        logger.debug(
            "redirect %d/%d: %d from %s -> %s %s",
            self.redirects,
            self.max_redirects,
            response.status_code,
            response.url,
            request.method,
            request.url,
        )
        return request

    async def _deliver(self, response: Response) -> Request | None:
        self._delivered = True
        result = await call_optional(self.consumer, "http_header", response)
        if not isinstance(result, Request):
            return None
        # A wrapped wrapper asked for another request: pass it up; it expects
        # to hear about that request's response (or failure) too.
        self._delivered = False
        return result

    async def _fail(self, response: Response, exc: BaseException) -> None:
        """Tell the wrapped consumer the chain failed, as a failed connection is told."""
        if self._delivered:
            return
        failure = Response(
            url=response.url,
            request=response.request,
            history=[*response.history, response],
            error=exc,
        )
        self._delivered = True
        await call_optional(self.consumer, "http_header", failure)

    async def feed(self, data: bytes) -> None:
        """Pass a piece of the final response's body to the wrapped consumer.

        Only the final response's body is ever fed (the requester drops
        the body of a redirect). Awaits the wrapped ``feed`` if it is async;
        its exceptions propagate unchanged.
        """
        await maybe_await(self.consumer.feed(data))

    async def http_error(self, exc: BaseException) -> None:
        """The exchange broke after a head: tell the wrapped consumer.

        If the wrapped consumer has already had the final response, its
        optional ``http_error(exc)`` is called. If it has not seen a
        response yet (the break came during a redirect hop), it gets
        ``http_header`` with a failure ``Response`` (``status_code`` None,
        ``error`` set to ``exc``) instead, so it always learns of the
        failure, the same way as of a failed connection.
        """
        if not self._delivered and self._last is not None:
            await self._fail(self._last, exc)
            return
        await call_optional(self.consumer, "http_error", exc)

    async def http_complete(self) -> None:
        """The final response's body ended complete: tell the wrapped consumer.

        Calls the wrapped consumer's optional ``http_complete()``, only if
        it has had the final response's head.
        """
        if self._delivered:
            await call_optional(self.consumer, "http_complete")

    async def close(self) -> Any:
        """Close the wrapped consumer, once; returns what its ``close`` returns.

        A second call does nothing and returns None. Awaits the wrapped
        ``close`` if it is async; its exceptions propagate unchanged.
        """
        if self._closed:
            return None
        self._closed = True
        return await maybe_await(self.consumer.close())
