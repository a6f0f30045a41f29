"""RedirectingConsumer's policy, one rule per test, by calling its methods directly.

No sockets here: each test builds the ``Response`` a requester would hand over
and checks the ``Request`` that comes back (or the error). The end-to-end
runs through ``fetch`` are in ``test_consumers.py`` (local h11 server) and
``tests/peers/test_peer_httpbin.py`` (httpbin under gunicorn).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import trio

from trio_timehttp import (
    BytesConsumer,
    RedirectError,
    RedirectingConsumer,
    Request,
    Response,
    TooManyRedirects,
    fetch,
)
from trio_timehttp._headers import Headers
from trio_timehttp._redirects import REDIRECT_STATUSES, next_redirect

from helpers import EvilConnection, ServerRequest, count_open_sockets, serve_evil, serve_http

BASE = "http://example.com/a/b?q=1"


def make_response(
    status: int | None,
    location: str | Sequence[str] | None = None,
    *,
    url: str = BASE,
    method: str = "GET",
    req_headers: Any = (),
    body: bytes | None = None,
    history: list[Response] | None = None,
    request_url: str | None = None,
) -> Response:
    fields: list[tuple[str, str]] = []
    if isinstance(location, str):
        fields.append(("location", location))
    elif location is not None:
        fields.extend(("location", loc) for loc in location)
    request = Request(method, request_url or url, req_headers, body)
    return Response(
        url=url,
        request=request,
        status_code=status,
        reason="",
        headers=Headers(fields),
        history=history or [],
    )


class Recorder:
    """A plain (sync) consumer that records every call."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    def http_header(self, response: Response) -> None:
        self.calls.append(("http_header", response))

    def feed(self, data: bytes) -> None:
        self.calls.append(("feed", data))

    def http_error(self, exc: BaseException) -> None:
        self.calls.append(("http_error", exc))

    def close(self) -> str:
        self.calls.append(("close", None))
        return "closed"

    def names(self) -> list[str]:
        return [name for name, _ in self.calls]


class AsyncRecorder(Recorder):
    """The same, with ``async def`` methods."""

    async def http_header(self, response: Response) -> None:  # type: ignore[override]
        super().http_header(response)

    async def feed(self, data: bytes) -> None:  # type: ignore[override]
        super().feed(data)

    async def close(self) -> str:  # type: ignore[override]
        return super().close()


async def follow(response: Response, **kwargs: Any) -> Request:
    """The Request a fresh RedirectingConsumer returns for ``response``."""
    rc = RedirectingConsumer(Recorder(), **kwargs)
    result = await rc.http_header(response)
    assert isinstance(result, Request)
    return result


# --------------------------------------------------------------------------
# Status codes and methods

# (status, method) -> (method sent next, body kept?)
METHOD_RULES = [
    (status, method, expected)
    for status, rules in {
        301: {"GET": "GET", "HEAD": "HEAD", "POST": "GET", "PUT": "PUT", "DELETE": "DELETE"},
        302: {"GET": "GET", "HEAD": "HEAD", "POST": "GET", "PUT": "PUT", "DELETE": "DELETE"},
        303: {"GET": "GET", "HEAD": "HEAD", "POST": "GET", "PUT": "GET", "DELETE": "GET"},
        307: {"GET": "GET", "HEAD": "HEAD", "POST": "POST", "PUT": "PUT", "DELETE": "DELETE"},
        308: {"GET": "GET", "HEAD": "HEAD", "POST": "POST", "PUT": "PUT", "DELETE": "DELETE"},
    }.items()
    for method, expected in rules.items()
]


@pytest.mark.parametrize(("status", "method", "expected"), METHOD_RULES)
async def test_method_rule(status: int, method: str, expected: str) -> None:
    body = b"payload"
    rewritten = (status == 303 and method != "HEAD") or (status in (301, 302) and method == "POST")
    nxt = await follow(
        make_response(
            status,
            "/next",
            method=method,
            body=body,
            req_headers=[
                ("Content-Type", "text/plain"),
                ("Content-Length", "7"),
                ("Transfer-Encoding", "chunked"),
                ("X-Keep", "yes"),
            ],
        )
    )
    assert nxt.method == expected
    assert nxt.url == "http://example.com/next"
    assert nxt.headers.get("x-keep") == "yes"
    if rewritten:
        assert nxt.body is None
        for name in ("content-type", "content-length", "transfer-encoding"):
            assert name not in nxt.headers
    else:
        assert nxt.body == body
        assert nxt.headers.get("content-type") == "text/plain"


async def test_303_drops_every_content_header() -> None:
    nxt = await follow(
        make_response(
            303,
            "/x",
            method="POST",
            body=b"a=1",
            req_headers={
                "Content-Encoding": "gzip",
                "Content-Language": "en",
                "Content-Location": "/y",
                "Accept": "*/*",
            },
        )
    )
    assert nxt.method == "GET"
    assert nxt.body is None
    assert [k for k, _ in nxt.headers.items()] == ["accept"]


@pytest.mark.parametrize("status", [300, 301, 302, 303, 304, 305, 306, 307, 308, 200, 404])
async def test_only_the_five_redirect_codes_with_location_are_followed(status: int) -> None:
    inner = Recorder()
    rc = RedirectingConsumer(inner)
    response = make_response(status, "/elsewhere")
    result = await rc.http_header(response)
    if status in (301, 302, 303, 307, 308):
        assert isinstance(result, Request)
        assert inner.calls == []
    else:
        assert result is None
        assert inner.calls == [("http_header", response)]


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
async def test_redirect_without_location_is_delivered(status: int) -> None:
    inner = Recorder()
    rc = RedirectingConsumer(inner)
    response = make_response(status)
    assert await rc.http_header(response) is None
    assert inner.calls == [("http_header", response)]


async def test_304_is_delivered_even_with_location() -> None:
    inner = Recorder()
    response = make_response(304, "/x")
    assert await RedirectingConsumer(inner).http_header(response) is None
    assert inner.names() == ["http_header"]


# --------------------------------------------------------------------------
# Resolving the Location (RFC 3986 section 5)


@pytest.mark.parametrize(
    ("base", "location", "expected"),
    [
        (BASE, "/abs/path", "http://example.com/abs/path"),
        (BASE, "rel", "http://example.com/a/rel"),
        (BASE, "../up", "http://example.com/up"),
        (BASE, "./here?x=2", "http://example.com/a/here?x=2"),
        (BASE, "?only=query", "http://example.com/a/b?only=query"),
        (BASE, "http://other.example/p", "http://other.example/p"),
        (BASE, "https://other.example/p", "https://other.example/p"),
        (BASE, "//other.example:8080/p", "http://other.example:8080/p"),
        ("https://example.com/a", "//other.example/p", "https://other.example/p"),
        # http:/path (scheme, no authority) keeps the current origin and port
        ("http://example.com:8080/a/b", "http:/path", "http://example.com:8080/path"),
        ("http://example.com:8080/a/b", "HTTP:/path", "http://example.com:8080/path"),
        ("http://example.com:8080/a/b", "http:rel", "http://example.com:8080/a/rel"),
        ("http://[::1]:8080/a", "/b", "http://[::1]:8080/b"),
        ("http://example.com/a", "http://EXAMPLE.com:80/b", "http://example.com/b"),
        (BASE, "http://例え.jp/", "http://xn--r8jz45g.jp/"),
        # UTF-8 on the wire, as h11 hands it over (each byte a Latin-1 char)
        (
            BASE,
            "http://bücher.example/".encode().decode("latin-1"),
            "http://xn--bcher-kva.example/",
        ),
    ],
)
async def test_location_resolution(base: str, location: str, expected: str) -> None:
    assert (await follow(make_response(302, location, url=base))).url == expected


async def test_scheme_relative_to_other_scheme_without_host_is_refused() -> None:
    with pytest.raises(RedirectError):
        await follow(make_response(302, "https:/path"))


async def test_fragment_inherited_when_location_has_none() -> None:
    r = make_response(302, "/next", url="http://example.com/a#frag")
    assert (await follow(r)).url == "http://example.com/next#frag"


async def test_fragment_of_location_wins() -> None:
    r = make_response(302, "/next#new", url="http://example.com/a#frag")
    assert (await follow(r)).url == "http://example.com/next#new"


async def test_fragment_taken_from_request_when_response_url_lacks_it() -> None:
    r = make_response(
        302, "/next", url="http://example.com/a", request_url="http://example.com/a#frag"
    )
    assert (await follow(r)).url == "http://example.com/next#frag"


async def test_non_ascii_location_is_percent_encoded() -> None:
    # Text beyond Latin-1 (a Response built by hand, not off the wire) is UTF-8 encoded.
    nxt = await follow(make_response(302, "/日本?q=€#§"))
    assert nxt.url == "http://example.com/%E6%97%A5%E6%9C%AC?q=%E2%82%AC#%C2%A7"


async def test_utf8_bytes_decoded_as_latin1_are_reencoded() -> None:
    # What h11 hands over for the raw bytes b"/caf\xc3\xa9": each byte a Latin-1 char.
    wire = "/café".encode().decode("latin-1")
    assert (await follow(make_response(302, wire))).url == "http://example.com/caf%C3%A9"


async def test_non_utf8_bytes_are_percent_encoded_as_is() -> None:
    wire = b"/caf\xe9".decode("latin-1")
    assert (await follow(make_response(302, wire))).url == "http://example.com/caf%E9"


@pytest.mark.parametrize(
    ("location", "expected"),
    [
        ("../m o o.html", "http://example.com/m%20o%20o.html"),
        ("m o o.html", "http://example.com/a/m%20o%20o.html"),
        ("/a b?c d=e f", "http://example.com/a%20b?c%20d=e%20f"),
        ("http://other.example/x y#z w", "http://other.example/x%20y#z%20w"),
        ("//other.example:8080/ a ", "http://other.example:8080/%20a"),
        ("  /padded  ", "http://example.com/padded"),  # optional whitespace is not the value
        ("\t/tabbed\t", "http://example.com/tabbed"),
        ("/caf\xc3\xa9 noir", "http://example.com/caf%C3%A9%20noir"),  # UTF-8 read as Latin-1
    ],
)
async def test_spaces_in_a_location_are_percent_encoded(location: str, expected: str) -> None:
    assert (await follow(make_response(302, location))).url == expected


@pytest.mark.parametrize("status", sorted(REDIRECT_STATUSES))
@pytest.mark.parametrize("location", ["", " ", "\t", "  \t  ", ["", ""], [" ", "\t"]])
async def test_an_empty_location_is_no_redirect(status: int, location: str | list[str]) -> None:
    response = make_response(status, location)
    assert next_redirect(response) is None
    inner = Recorder()
    rc = RedirectingConsumer(inner, max_redirects=0)  # no redirect, so no count either
    assert await rc.http_header(response) is None
    await rc.feed(b"the body")
    await rc.close()
    assert inner.names() == ["http_header", "feed", "close"]
    assert inner.calls[0][1] is response


async def test_an_empty_location_beside_a_real_one_is_a_conflict() -> None:
    with pytest.raises(RedirectError, match="conflicting"):
        await follow(make_response(302, ["", "/x"]))


async def test_existing_escapes_are_kept() -> None:
    nxt = await follow(make_response(302, "/a%20b?x=%2F"))
    assert nxt.url == "http://example.com/a%20b?x=%2F"


async def test_unwise_characters_are_percent_encoded() -> None:
    nxt = await follow(make_response(302, '/p?a=|{x}^"<>`'))
    assert nxt.url == "http://example.com/p?a=%7C%7Bx%7D%5E%22%3C%3E%60"


async def test_duplicate_identical_locations_are_fine() -> None:
    assert (await follow(make_response(302, ["/x", "/x"]))).url == "http://example.com/x"


async def test_conflicting_locations_are_refused() -> None:
    with pytest.raises(RedirectError, match="conflicting"):
        await follow(make_response(302, ["/x", "/y"]))


# --------------------------------------------------------------------------
# Locations that must not be followed


@pytest.mark.parametrize(
    "location",
    [
        "file:///etc/passwd",
        "ftp://example.com/file",
        "javascript:alert(1)",
        "data:text/html,<h1>hi</h1>",
        "mailto:root@example.com",
        "gopher://example.com/",
        "ws://example.com/",
    ],
)
async def test_other_schemes_are_refused(location: str) -> None:
    with pytest.raises(RedirectError, match="only http and https"):
        await follow(make_response(302, location))


@pytest.mark.parametrize(
    "location",
    [
        "http://[::1",  # unterminated IPv6 literal
        "http://[::1]x/",  # junk after it
        "http://[nope]/",
        "http:///nohost",
        "http://exa mple.com/",  # a space in the host is never encoded
        "//exa mple.com/x",
        "http://a b:80/",
        "https://example.com :443/",
        "/a\tb",
        "/a b\tc",
        "/a\x00b",
        "/a\x01b",
        "/a\x1fb",
        "/a\x7fb",
        "/a\r\nSet-Cookie: evil=1",
        "/a\rb",
        "/a\nb",
        "http://example.com:99999/",
        "http://example.com:0/",
        "http://example.com:-1/",
        "http://example.com:8o/",
        "http://example.com:+80/",
        "http://example.com:١٢/",  # non-ASCII digits
        "http://user:pass@example.com/",
        "http://ex_ample..com/",
        "http://-bad-.com/",
        "http:\\\\evil.example\\",
        "http://" + "a" * 300 + "/",
    ],
)
async def test_malformed_locations_raise_redirect_error(location: str) -> None:
    with pytest.raises(RedirectError) as info:
        await follow(make_response(302, location))
    # never an InvalidURL (that is for the caller's own URL)
    assert type(info.value) is RedirectError


async def test_crlf_in_location_never_reaches_a_request() -> None:
    inner = Recorder()
    rc = RedirectingConsumer(inner)
    with pytest.raises(RedirectError):
        await rc.http_header(make_response(302, "/x\r\nHost: evil"))
    assert inner.names() == ["http_header"]
    assert inner.calls[0][1].status_code is None


# --------------------------------------------------------------------------
# https -> http


async def test_downgrade_refused_by_default() -> None:
    with pytest.raises(RedirectError, match="https to http"):
        await follow(make_response(301, "http://example.com/", url="https://example.com/"))


async def test_downgrade_allowed_when_asked() -> None:
    r = make_response(301, "http://example.com/", url="https://example.com/")
    assert (await follow(r, allow_downgrade=True)).url == "http://example.com/"


async def test_upgrade_is_always_fine() -> None:
    r = make_response(301, "https://example.com/", url="http://example.com/")
    assert (await follow(r)).url == "https://example.com/"


# --------------------------------------------------------------------------
# Credentials and Host

CREDENTIALS = ["Authorization", "Cookie", "Proxy-Authorization"]


@pytest.mark.parametrize("name", CREDENTIALS)
@pytest.mark.parametrize(
    ("url", "location"),
    [
        ("http://example.com/", "http://other.example/"),  # host
        ("http://example.com/", "http://example.com:8080/"),  # port
        ("http://example.com/", "https://example.com/"),  # scheme
        ("https://example.com/", "https://example.com:8443/"),  # port, https
        ("http://example.com/", "http://sub.example.com/"),  # subdomain is another host
        ("http://127.0.0.1:8000/", "http://localhost:8000/"),
    ],
)
async def test_credentials_dropped_on_origin_change(name: str, url: str, location: str) -> None:
    r = make_response(302, location, url=url, req_headers=[(name, "secret"), ("X-Other", "1")])
    nxt = await follow(r)
    assert name.lower() not in nxt.headers
    assert nxt.headers.get("x-other") == "1"


@pytest.mark.parametrize("name", CREDENTIALS)
@pytest.mark.parametrize(
    ("url", "location"),
    [
        ("http://example.com/a", "/b"),
        ("http://example.com/a", "http://EXAMPLE.COM/b"),
        ("http://example.com/a", "http://example.com:80/b"),  # default port normalised
        ("https://example.com:443/a", "https://example.com/b"),
        ("http://example.com:8080/a", "http:/b"),
    ],
)
async def test_credentials_kept_on_same_origin(name: str, url: str, location: str) -> None:
    nxt = await follow(make_response(307, location, url=url, req_headers=[(name, "secret")]))
    assert nxt.headers.get(name) == "secret"


async def test_credentials_stay_dropped_after_coming_back() -> None:
    rc = RedirectingConsumer(Recorder())
    creds = [(n, "secret") for n in CREDENTIALS]
    first = await rc.http_header(
        make_response(302, "http://other.example/", url="http://example.com/", req_headers=creds)
    )
    assert isinstance(first, Request)
    # A caller-side wrapper could re-add them; the flag keeps them out anyway.
    second = await rc.http_header(
        make_response(302, "http://example.com/back", url=first.url, req_headers=creds)
    )
    assert isinstance(second, Request)
    assert second.url == "http://example.com/back"
    for name in CREDENTIALS:
        assert name not in second.headers


async def test_pure_policy_reports_stripping() -> None:
    result = next_redirect(make_response(302, "http://other.example/"))
    assert result is not None
    assert result[1] is True
    same = next_redirect(make_response(302, "/x"))
    assert same is not None
    assert same[1] is False
    assert next_redirect(make_response(200, "/x")) is None


@pytest.mark.parametrize("location", ["/same", "http://example.com:80/x", "http://other.example/"])
@pytest.mark.parametrize(
    "fields",
    [
        [("Host", "example.com")],
        [("HOST", "vhost.example:8080"), ("Accept", "*/*")],
        [("host", "a.example"), ("host", "b.example")],
    ],
)
async def test_host_is_never_forwarded(location: str, fields: list[tuple[str, str]]) -> None:
    nxt = await follow(make_response(302, location, req_headers=fields))
    assert "host" not in nxt.headers
    assert nxt.headers.get_list("host") == []


async def test_other_headers_are_forwarded_in_order() -> None:
    fields = [("Accept", "a"), ("X-One", "1"), ("X-One", "2")]
    nxt = await follow(make_response(302, "/x", req_headers=fields))
    assert nxt.headers.items() == [("accept", "a"), ("x-one", "1"), ("x-one", "2")]


# --------------------------------------------------------------------------
# Counting, loops


async def chain(rc: RedirectingConsumer, hops: int, *, loop: bool = False) -> None:
    """Feed ``hops`` redirect responses through ``rc``."""
    url = BASE
    history: list[Response] = []
    for i in range(hops):
        location = BASE if loop else f"/hop{i + 1}"
        response = make_response(302, location, url=url, history=list(history))
        nxt = await rc.http_header(response)
        assert isinstance(nxt, Request)
        history.append(response)
        url = nxt.url


async def test_max_redirects_zero_raises_on_first() -> None:
    inner = Recorder()
    rc = RedirectingConsumer(inner, max_redirects=0)
    with pytest.raises(TooManyRedirects):
        await rc.http_header(make_response(302, "/x"))
    assert inner.names() == ["http_header"]


@pytest.mark.parametrize("limit", [1, 3, 10])
async def test_exactly_max_redirects_are_followed(limit: int) -> None:
    rc = RedirectingConsumer(Recorder(), max_redirects=limit)
    await chain(rc, limit)
    assert rc.redirects == limit
    with pytest.raises(TooManyRedirects, match=f"more than {limit} redirects"):
        await rc.http_header(make_response(302, "/one-more"))


async def test_final_response_after_max_redirects_is_delivered() -> None:
    inner = Recorder()
    rc = RedirectingConsumer(inner, max_redirects=2)
    await chain(rc, 2)
    final = make_response(200)
    assert await rc.http_header(final) is None
    assert inner.calls == [("http_header", final)]


async def test_default_is_ten() -> None:
    rc = RedirectingConsumer(Recorder())
    await chain(rc, 10)
    with pytest.raises(TooManyRedirects):
        await chain(rc, 1)


async def test_self_loop_ends_in_too_many_redirects() -> None:
    rc = RedirectingConsumer(Recorder())
    with pytest.raises(TooManyRedirects, match="loop"):
        await chain(rc, 100, loop=True)


async def test_hundred_hop_chain() -> None:
    inner = Recorder()
    rc = RedirectingConsumer(inner)
    with pytest.raises(TooManyRedirects):
        await chain(rc, 100)
    assert rc.redirects == 10
    assert inner.names() == ["http_header"]


async def test_negative_max_redirects_is_a_caller_error() -> None:
    with pytest.raises(ValueError, match="max_redirects"):
        RedirectingConsumer(Recorder(), max_redirects=-1)


# --------------------------------------------------------------------------
# What the wrapped consumer sees


@pytest.mark.parametrize("cls", [Recorder, AsyncRecorder])
async def test_wrapped_sees_only_final_response(cls: type[Recorder]) -> None:
    inner = cls()
    rc = RedirectingConsumer(inner)
    await chain(rc, 3)
    final = make_response(200)
    await rc.http_header(final)
    await rc.feed(b"ab")
    await rc.feed(b"c")
    assert await rc.close() == "closed"
    assert await rc.close() is None  # once only
    assert inner.calls == [
        ("http_header", final),
        ("feed", b"ab"),
        ("feed", b"c"),
        ("close", None),
    ]


@pytest.mark.parametrize("cls", [Recorder, AsyncRecorder])
@pytest.mark.parametrize(
    ("kwargs", "location", "error"),
    [
        ({"max_redirects": 0}, "/x", TooManyRedirects),
        ({}, "ftp://example.com/", RedirectError),
        ({}, "http://[::1", RedirectError),
    ],
)
async def test_wrapped_learns_of_a_failed_chain(
    cls: type[Recorder], kwargs: dict[str, Any], location: str, error: type[Exception]
) -> None:
    inner = cls()
    rc = RedirectingConsumer(inner, **kwargs)
    earlier = make_response(301, "/a/b")
    response = make_response(302, location, history=[earlier])
    with pytest.raises(error) as info:
        await rc.http_header(response)
    await rc.close()
    assert inner.names() == ["http_header", "close"]
    failure = inner.calls[0][1]
    assert failure.status_code is None
    assert failure.error is info.value
    assert failure.url == response.url
    assert failure.request is response.request
    assert failure.history == [earlier, response]


async def test_failed_connection_on_a_later_hop_is_delivered() -> None:
    inner = Recorder()
    rc = RedirectingConsumer(inner)
    await chain(rc, 1)
    failed = make_response(None)
    failed.error = OSError("refused")
    assert await rc.http_header(failed) is None
    assert inner.calls == [("http_header", failed)]


async def test_http_error_after_delivery_is_passed_on() -> None:
    inner = Recorder()
    rc = RedirectingConsumer(inner)
    await rc.http_header(make_response(200))
    exc = RuntimeError("truncated")
    await rc.http_error(exc)
    assert inner.calls[-1] == ("http_error", exc)


async def test_http_error_during_a_hop_becomes_a_failure_header() -> None:
    inner = Recorder()
    rc = RedirectingConsumer(inner)
    await chain(rc, 1)
    exc = RuntimeError("broke while dropping the redirect body")
    await rc.http_error(exc)
    assert inner.names() == ["http_header"]
    assert inner.calls[0][1].status_code is None
    assert inner.calls[0][1].error is exc


async def test_http_error_without_a_wrapped_http_error() -> None:
    class Minimal:
        def __init__(self) -> None:
            self.data = b""

        def feed(self, data: bytes) -> None:
            self.data += data

        def close(self) -> None:
            pass

    inner = Minimal()
    rc = RedirectingConsumer(inner)
    assert await rc.http_header(make_response(200)) is None  # no http_header: skipped
    await rc.feed(b"x")
    await rc.http_error(RuntimeError())
    with pytest.raises(TooManyRedirects):  # failure path with no http_header either
        await RedirectingConsumer(inner, max_redirects=0).http_header(make_response(302, "/"))
    assert inner.data == b"x"


async def test_wrapped_consumer_exception_propagates_unchanged() -> None:
    class Boom(Recorder):
        def http_header(self, response: Response) -> None:
            raise KeyError("mine")

    with pytest.raises(KeyError, match="mine"):
        await RedirectingConsumer(Boom()).http_header(make_response(200))


async def test_a_nested_wrapper_may_ask_for_another_request() -> None:
    again = Request("GET", "http://example.com/retry")

    class Retry(Recorder):
        def http_header(self, response: Response) -> Request:  # type: ignore[override]
            super().http_header(response)
            return again

    assert await RedirectingConsumer(Retry()).http_header(make_response(200)) is again


async def test_each_redirect_is_logged_at_debug(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="trio_timehttp.http")
    await follow(make_response(301, "/moved"))
    records = [r for r in caplog.records if r.name == "trio_timehttp.http"]
    assert len(records) == 1
    assert records[0].levelno == logging.DEBUG
    assert "http://example.com/moved" in records[0].getMessage()


# --------------------------------------------------------------------------
# Through fetch, against the local h11 test server


def redirect_handler(request: ServerRequest) -> tuple[int, list[tuple[str, str]], bytes]:
    """``/hops/N`` counts down; ``/to?url=..&status=..``; ``/loop``; ``/echo`` says what it got."""
    parts = urlsplit(request.target)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    if parts.path.startswith("/hops/"):
        n = int(parts.path.rsplit("/", 1)[1])
        if n == 0:
            return 200, [("content-type", "text/plain")], b"done"
        return 302, [("location", f"/hops/{n - 1}")], b"moved"
    if parts.path == "/to":
        return int(query.get("status", "302")), [("location", query["url"])], b"go there"
    if parts.path == "/loop":
        return 307, [("location", "/loop")], b""
    echo = {
        "method": request.method,
        "target": request.target,
        "headers": dict(request.headers),
        "body": request.body.decode("latin-1"),
    }
    return 200, [("content-type", "application/json")], json.dumps(echo).encode()


async def test_fetch_follows_a_chain() -> None:
    async with trio.open_nursery() as nursery:
        server = await nursery.start(serve_http, redirect_handler)
        inner = BytesConsumer()
        response = await fetch(server.url("/hops/3"), RedirectingConsumer(inner))
        nursery.cancel_scope.cancel()
    assert response.status_code == 200
    assert inner.body == b"done"
    assert inner.response is response
    assert [r.status_code for r in response.history] == [302, 302, 302]
    assert [r.url for r in response.history] == [server.url(f"/hops/{n}") for n in (3, 2, 1)]
    assert response.url == server.url("/hops/0")


async def test_fetch_wrapped_consumer_sees_only_the_final_response() -> None:
    async with trio.open_nursery() as nursery:
        server = await nursery.start(serve_http, redirect_handler)
        inner = AsyncRecorder()
        await fetch(server.url("/hops/2"), RedirectingConsumer(inner))
        nursery.cancel_scope.cancel()
    assert inner.names() == ["http_header", "feed", "close"]
    assert inner.calls[0][1].status_code == 200
    assert inner.calls[1][1] == b"done"


@pytest.mark.parametrize(
    ("status", "method", "sent_method", "body_kept"),
    [
        (301, "POST", "GET", False),
        (302, "POST", "GET", False),
        (303, "POST", "GET", False),
        (303, "PUT", "GET", False),
        (307, "POST", "POST", True),
        (308, "PUT", "PUT", True),
        (302, "PUT", "PUT", True),
    ],
)
async def test_fetch_method_rules(
    status: int, method: str, sent_method: str, body_kept: bool
) -> None:
    async with trio.open_nursery() as nursery:
        server = await nursery.start(serve_http, redirect_handler)
        inner = BytesConsumer()
        await fetch(
            server.url(f"/to?status={status}&url=/echo"),
            RedirectingConsumer(inner),
            method=method,
            body=b"a=1",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        nursery.cancel_scope.cancel()
    echo = json.loads(inner.body)
    assert echo["method"] == sent_method
    if body_kept:
        assert echo["body"] == "a=1"
        assert echo["headers"]["content-type"] == "application/x-www-form-urlencoded"
    else:
        assert echo["body"] == ""
        assert "content-type" not in echo["headers"]
        assert "content-length" not in echo["headers"] or echo["headers"]["content-length"] == "0"


async def test_fetch_credentials_do_not_cross_to_another_origin() -> None:
    creds = {"Authorization": "Bearer x", "Cookie": "s=1", "Proxy-Authorization": "Basic y"}
    async with trio.open_nursery() as nursery:
        first = await nursery.start(serve_http, redirect_handler)
        second = await nursery.start(serve_http, redirect_handler)  # another port
        inner = BytesConsumer()
        target = second.url("/echo")
        await fetch(first.url(f"/to?url={target}"), RedirectingConsumer(inner), headers=creds)
        nursery.cancel_scope.cancel()
    assert first.requests[0].header("authorization") == "Bearer x"
    seen = second.requests[0]
    for name in creds:
        assert seen.header(name) is None
    assert seen.header("host") == f"127.0.0.1:{second.port}"


async def test_fetch_credentials_kept_on_the_same_origin() -> None:
    async with trio.open_nursery() as nursery:
        server = await nursery.start(serve_http, redirect_handler)
        await fetch(
            server.url("/hops/1"),
            RedirectingConsumer(BytesConsumer()),
            headers={"Authorization": "Bearer x"},
        )
        nursery.cancel_scope.cancel()
    assert [r.header("authorization") for r in server.requests] == ["Bearer x", "Bearer x"]


async def test_fetch_loop_ends_in_too_many_redirects_and_closes_once() -> None:
    before = count_open_sockets()
    async with trio.open_nursery() as nursery:
        server = await nursery.start(serve_http, redirect_handler)
        inner = Recorder()
        with pytest.raises(TooManyRedirects, match="loop"):
            await fetch(server.url("/loop"), RedirectingConsumer(inner, max_redirects=5))
        nursery.cancel_scope.cancel()
    assert len(server.requests) == 6
    assert inner.names() == ["http_header", "close"]
    assert isinstance(inner.calls[0][1].error, TooManyRedirects)
    assert count_open_sockets() == before


@pytest.mark.parametrize("location", ["file:///etc/passwd", "http://[::1", "javascript:x"])
async def test_fetch_bad_location_is_a_redirect_error(location: str) -> None:
    async with trio.open_nursery() as nursery:
        server = await nursery.start(serve_http, redirect_handler)
        inner = Recorder()
        with pytest.raises(RedirectError):
            await fetch(server.url(f"/to?url={location}"), RedirectingConsumer(inner))
        nursery.cancel_scope.cancel()
    assert inner.names() == ["http_header", "close"]
    assert len(server.requests) == 1


async def test_fetch_http_slash_path_keeps_origin_and_port() -> None:
    heads: list[bytes] = []

    async def redirect(conn: EvilConnection) -> None:
        heads.append(await conn.recv_request())
        await conn.send(
            b"HTTP/1.1 302 Found\r\nLocation: http:/hop?x=1\r\n"
            b"Content-Length: 0\r\nConnection: close\r\n\r\n"
        )

    async def final(conn: EvilConnection) -> None:
        heads.append(await conn.recv_request())
        await conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")

    async with trio.open_nursery() as nursery:
        server = await nursery.start(serve_evil, [redirect, final])
        inner = BytesConsumer()
        response = await fetch(server.url("/start#frag"), RedirectingConsumer(inner))
        nursery.cancel_scope.cancel()
    assert inner.body == b"ok"
    assert response.url == server.url("/hop?x=1#frag")
    assert heads[1].startswith(b"GET /hop?x=1 HTTP/1.1\r\n")  # the fragment is never sent
    assert f"host: 127.0.0.1:{server.port}\r\n".encode() in heads[1].lower()


async def test_fetch_control_byte_in_location_never_reaches_the_wire() -> None:
    script = [
        ("recv",),
        (
            "send",
            b"HTTP/1.1 302 Found\r\nLocation: /a\x01b\r\nContent-Length: 0\r\n\r\n",
        ),
        ("recv",),
    ]
    async with trio.open_nursery() as nursery:
        server = await nursery.start(serve_evil, script)
        inner = Recorder()
        with pytest.raises(RedirectError):
            await fetch(server.url("/"), RedirectingConsumer(inner))
        nursery.cancel_scope.cancel()
    assert server.connections == 1
    assert inner.names() == ["http_header", "close"]


async def test_a_nested_wrapper_hears_of_a_failure_after_asking_again() -> None:
    again = Request("GET", "http://example.com/retry")

    class RetryOnce(Recorder):
        def http_header(self, response: Response) -> Request | None:  # type: ignore[override]
            super().http_header(response)
            return again if len(self.calls) == 1 else None

    inner = RetryOnce()
    rc = RedirectingConsumer(inner)
    assert await rc.http_header(make_response(200)) is again
    with pytest.raises(RedirectError):
        await rc.http_header(make_response(302, "ftp://x/", url=again.url))
    assert inner.names() == ["http_header", "http_header"]
    assert inner.calls[1][1].status_code is None


async def test_failure_is_reported_once_even_if_misused() -> None:
    inner = Recorder()
    rc = RedirectingConsumer(inner, max_redirects=0)
    await rc.http_header(make_response(200))
    with pytest.raises(TooManyRedirects):  # a driver that keeps going after a final response
        await rc.http_header(make_response(302, "/x"))
    assert inner.names() == ["http_header"]


async def _follow_one_location(location: bytes, *, path: str = "/dir/sub/page") -> list[bytes]:
    """Fetch ``path`` from a server that answers 302 ``Location: location`` once, then 200.

    Returns the request heads the server received, in order.
    """
    heads: list[bytes] = []

    async def answer(conn: EvilConnection) -> None:
        heads.append(await conn.recv_request())
        if len(heads) == 1:
            await conn.send(
                b"HTTP/1.1 302 Found\r\nLocation: " + location + b"\r\n"
                b"Content-Length: 5\r\nConnection: close\r\n\r\nmoved"
            )
        else:
            await conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")

    async with trio.open_nursery() as nursery:
        server = await nursery.start(serve_evil, answer)
        inner = BytesConsumer()
        response = await fetch(server.url(path), RedirectingConsumer(inner))
        nursery.cancel_scope.cancel()
    assert inner.response is response
    return heads


@pytest.mark.parametrize(
    ("location", "request_line"),
    [
        (b"../m o o.html", b"GET /dir/m%20o%20o.html HTTP/1.1\r\n"),
        (b"m o o.html", b"GET /dir/sub/m%20o%20o.html HTTP/1.1\r\n"),
        (b"/a b/c?d e=f g", b"GET /a%20b/c?d%20e=f%20g HTTP/1.1\r\n"),
        (b"/x y#frag ment", b"GET /x%20y HTTP/1.1\r\n"),  # the fragment is never sent
        (b"/caf\xc3\xa9 cr\xc3\xa8me", b"GET /caf%C3%A9%20cr%C3%A8me HTTP/1.1\r\n"),
    ],
)
async def test_fetch_follows_a_location_with_spaces(location: bytes, request_line: bytes) -> None:
    heads = await _follow_one_location(location)
    assert len(heads) == 2
    assert heads[1].startswith(request_line)


@pytest.mark.parametrize("location", [b"", b" ", b"\t", b"   \t "])
async def test_fetch_delivers_a_redirect_with_an_empty_location_as_it_is(location: bytes) -> None:
    heads: list[bytes] = []

    async def answer(conn: EvilConnection) -> None:
        heads.append(await conn.recv_request())
        await conn.send(
            b"HTTP/1.1 302 Found\r\nLocation:" + location + b"\r\n"
            b"Content-Length: 5\r\nConnection: close\r\n\r\nmoved"
        )

    async with trio.open_nursery() as nursery:
        server = await nursery.start(serve_evil, answer)
        inner = BytesConsumer()
        response = await fetch(server.url("/start"), RedirectingConsumer(inner, max_redirects=3))
        nursery.cancel_scope.cancel()
    assert response.status_code == 302
    assert response.history == []
    assert inner.response is response
    assert inner.body == b"moved"
    assert len(heads) == 1


@pytest.mark.parametrize(
    "location", [b"http://exa mple.com/", b"//a b/x", b"http://127.0.0.1 :80/"]
)
async def test_fetch_refuses_a_space_in_the_location_host(location: bytes) -> None:
    async with trio.open_nursery() as nursery:
        server = await nursery.start(
            serve_evil,
            [
                ("recv",),
                (
                    "send",
                    b"HTTP/1.1 302 Found\r\nLocation: " + location + b"\r\n"
                    b"Content-Length: 0\r\nConnection: close\r\n\r\n",
                ),
            ],
        )
        inner = Recorder()
        with pytest.raises(RedirectError, match="Location"):
            await fetch(server.url("/"), RedirectingConsumer(inner))
        nursery.cancel_scope.cancel()
    assert server.connections == 1
    assert inner.names() == ["http_header", "close"]


@pytest.mark.parametrize("caller_host", ["vhost.example", "VHost.Example:8080", "127.0.0.1"])
async def test_fetch_recomputes_host_on_every_redirect_hop(caller_host: str) -> None:
    # The first hop is the requester's business (a caller's Host is honoured
    # there); every later hop carries the Host of the URL it goes to, once.
    async with trio.open_nursery() as nursery:
        first = await nursery.start(serve_http, redirect_handler)
        second = await nursery.start(serve_http, redirect_handler)
        inner = BytesConsumer()
        chain = first.url(f"/to?url=/to%3Furl%3D{second.url('/echo')}")
        await fetch(chain, RedirectingConsumer(inner), headers={"Host": caller_host})
        nursery.cancel_scope.cancel()
    same_origin_hop = first.requests[1]
    other_origin_hop = second.requests[0]
    assert [v for k, v in same_origin_hop.headers if k == "host"] == [f"127.0.0.1:{first.port}"]
    assert [v for k, v in other_origin_hop.headers if k == "host"] == [f"127.0.0.1:{second.port}"]
    assert json.loads(inner.body)["headers"]["host"] == f"127.0.0.1:{second.port}"
