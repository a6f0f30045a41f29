"""URL parsing, validation and Location resolution (``_urls``, pure).

The pure rules are tested with strings (and hypothesis where a rule must hold
for every input); the last section checks, through ``fetch`` and a real
loopback socket, that the request line a server receives follows them.
"""

from __future__ import annotations

import pytest
import trio
from hypothesis import given
from hypothesis import strategies as st

from trio_timehttp import BytesConsumer, InvalidURL, fetch
from trio_timehttp._urls import (
    URL,
    encode_location,
    parse_url,
    remove_dot_segments,
    resolve_location,
)

from helpers import EvilConnection, serve_evil


@pytest.mark.parametrize(
    ("url", "scheme", "host", "port", "target", "fragment"),
    [
        ("http://example.com", "http", "example.com", 80, "/", None),
        ("https://example.com", "https", "example.com", 443, "/", None),
        ("HTTP://Example.COM/Path", "http", "example.com", 80, "/Path", None),
        ("http://example.com:8080/a?b=c", "http", "example.com", 8080, "/a?b=c", None),
        ("http://example.com/a?", "http", "example.com", 80, "/a?", None),
        ("http://example.com/?#", "http", "example.com", 80, "/?", ""),
        ("http://example.com/a#frag", "http", "example.com", 80, "/a", "frag"),
        ("http://example.com:/x", "http", "example.com", 80, "/x", None),
        ("http://example.com./x", "http", "example.com", 80, "/x", None),
        ("http://127.0.0.1:1/", "http", "127.0.0.1", 1, "/", None),
        ("http://[::1]/", "http", "::1", 80, "/", None),
        ("https://[2001:DB8:0::1]:8443/x", "https", "2001:db8::1", 8443, "/x", None),
        ("http://under_score.example/", "http", "under_score.example", 80, "/", None),
        ("http://a/", "http", "a", 80, "/", None),
        ("http://example.com:65535/", "http", "example.com", 65535, "/", None),
        # RFC 3986: port = *DIGIT; leading zeros are digits too (curl agrees).
        ("http://127.0.0.1:018431/", "http", "127.0.0.1", 18431, "/", None),
        ("http://example.com:00080/", "http", "example.com", 80, "/", None),
        ("http://[::1]:0065535/", "http", "::1", 65535, "/", None),
        ("http://h:" + "0" * 5000 + "1/", "http", "h", 1, "/", None),
        ("http://bücher.example/", "http", "xn--bcher-kva.example", 80, "/", None),
        ("http://例え.jp/パス?q=値#断片", "http", "xn--r8jz45g.jp", 80,
         "/%E3%83%91%E3%82%B9?q=%E5%80%A4", "%E6%96%AD%E7%89%87"),
        ("http://example.com/a%20b", "http", "example.com", 80, "/a%20b", None),
        ("http://example.com/é%41", "http", "example.com", 80, "/%C3%A9%41", None),
    ],
)  # fmt: skip
def test_parse(
    url: str, scheme: str, host: str, port: int, target: str, fragment: str | None
) -> None:
    assert parse_url(url) == URL(scheme, host, port, target, fragment)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://example.com/", "only http and https"),
        ("file:///etc/passwd", "only http and https"),
        ("example.com", "only http and https"),
        ("//example.com/", "only http and https"),
        ("", "only http and https"),
        ("http://", "no host"),
        ("http:///x", "no host"),
        ("http:/x", "no host"),
        ("http://user@example.com/", "credentials"),
        ("http://user:pw@example.com/", "credentials"),
        ("http://[::1", "unterminated IPv6|malformed"),
        ("http://[::1/x", "unterminated IPv6|malformed"),
        ("http://[::1]x/", "junk after the IPv6"),
        ("http://[nope]/", "bad IPv6|malformed"),
        ("http://[1.2.3.4]/", "bad IPv6|malformed"),
        ("http://example.com:0/", "out of range"),
        ("http://example.com:65536/", "out of range"),
        ("http://example.com:123456/", "port 123456 out of range"),
        ("http://example.com:00/", "port 00 out of range"),
        ("http://example.com:065536/", "port 065536 out of range"),
        ("http://example.com:" + "9" * 5000 + "/", "out of range"),  # never int() of 5000 digits
        ("http://[fe80::1%25lo]:8080/", "IPv6 zone IDs are not supported"),
        ("http://[::1%25lo]/", "IPv6 zone IDs are not supported"),
        ("http://[fe80::1%lo]/", "IPv6 zone IDs are not supported"),
        ("http://example.com:-1/", "bad port"),
        ("http://example.com:+1/", "bad port"),
        ("http://example.com:1a/", "bad port"),
        ("http://example.com:\u0661/", "bad port"),
        ("http://example.com: 80/", "control characters or spaces"),
        ("http://exa mple.com/", "control characters or spaces"),
        ("http://example.com/a b", "control characters or spaces"),
        ("http://example.com/\x00", "control characters or spaces"),
        ("http://example.com/\x7f", "control characters or spaces"),
        ("http://example.com/\r\nX: y", "control characters or spaces"),
        ("http://example.com/a|b", "control characters or spaces"),
        ("http://example.com\\@evil/", "control characters or spaces"),
        ("http://-example.com/", "bad host"),
        ("http://example-.com/", "bad host"),
        ("http://exa..mple.com/", "bad host"),
        ("http://example.-com/", "bad host"),
        ("http://" + "a" * 64 + ".com/", "bad host"),
        ("http://exa!mple.com/", "bad host"),
        ("http://" + "a" * 254 + "/", "bad host"),
        ("http://xn--/", "bad host|IDNA"),
        ("http://\u0080\u0081.com/", "IDNA|bad host"),
        ("http://" + "ü" * 64 + ".com/", "IDNA"),
    ],
)
def test_parse_refuses(url: str, message: str) -> None:
    with pytest.raises(InvalidURL, match=message):
        parse_url(url)


def test_parse_refuses_non_str() -> None:
    with pytest.raises(InvalidURL, match="must be a str"):
        parse_url(b"http://example.com/")  # type: ignore[arg-type]


def test_invalid_url_is_a_value_error() -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - the point is the base class
        parse_url("gopher://x/")


@pytest.mark.parametrize(
    ("url", "origin", "authority", "text"),
    [
        ("http://Example.com:80/a", ("http", "example.com", 80), "example.com",
         "http://example.com/a"),
        ("https://example.com:443", ("https", "example.com", 443), "example.com",
         "https://example.com/"),
        ("http://example.com:443/", ("http", "example.com", 443), "example.com:443",
         "http://example.com:443/"),
        ("https://[::1]:8443/x?y#z", ("https", "::1", 8443), "[::1]:8443",
         "https://[::1]:8443/x?y#z"),
        ("http://[::1]/", ("http", "::1", 80), "[::1]", "http://[::1]/"),
    ],
)  # fmt: skip
def test_origin_authority_str(
    url: str, origin: tuple[str, str, int], authority: str, text: str
) -> None:
    parsed = parse_url(url)
    assert parsed.origin == origin
    assert parsed.authority == authority
    assert str(parsed) == text
    assert parse_url(str(parsed)) == parsed  # round trip


# RFC 3986 section 5.4.1 (normal examples) and 5.4.2 (abnormal ones), base
# http://a/b/c/d;p?q, with the scheme-relative and http:g cases as Python resolves them.
RFC3986 = [
    ("g", "http://a/b/c/g"),
    ("./g", "http://a/b/c/g"),
    ("g/", "http://a/b/c/g/"),
    ("/g", "http://a/g"),
    ("//g", "http://g/"),
    ("?y", "http://a/b/c/d;p?y"),
    ("g?y", "http://a/b/c/g?y"),
    ("#s", "http://a/b/c/d;p?q#s"),
    ("g#s", "http://a/b/c/g#s"),
    ("g?y#s", "http://a/b/c/g?y#s"),
    (";x", "http://a/b/c/;x"),
    ("g;x", "http://a/b/c/g;x"),
    ("", "http://a/b/c/d;p?q"),
    (".", "http://a/b/c/"),
    ("./", "http://a/b/c/"),
    ("..", "http://a/b/"),
    ("../", "http://a/b/"),
    ("../g", "http://a/b/g"),
    ("../..", "http://a/"),
    ("../../g", "http://a/g"),
    ("../../../g", "http://a/g"),
    ("../../../../g", "http://a/g"),
    ("/./g", "http://a/g"),
    ("/../g", "http://a/g"),
    ("g.", "http://a/b/c/g."),
    (".g", "http://a/b/c/.g"),
    ("g..", "http://a/b/c/g.."),
    ("..g", "http://a/b/c/..g"),
    ("./../g", "http://a/b/g"),
    ("./g/.", "http://a/b/c/g/"),
    ("g/./h", "http://a/b/c/g/h"),
    ("g/../h", "http://a/b/c/h"),
    ("g;x=1/./y", "http://a/b/c/g;x=1/y"),
    ("g;x=1/../y", "http://a/b/c/y"),
    ("g?y/./x", "http://a/b/c/g?y/./x"),
    ("g#s/../x", "http://a/b/c/g#s/../x"),
    ("http:g", "http://a/b/c/g"),  # the backward-compatible reading (section 5.2.2)
    ("http:/g", "http://a/g"),
    ("https://b/", "https://b/"),
]


@pytest.mark.parametrize(("location", "expected"), RFC3986)
def test_resolve_rfc3986_examples(location: str, expected: str) -> None:
    assert str(resolve_location(parse_url("http://a/b/c/d;p?q"), location)) == expected


def test_resolve_keeps_the_base_fragment_when_the_location_has_none() -> None:
    base = parse_url("http://a/b#top")
    assert str(resolve_location(base, "/c")) == "http://a/c#top"
    assert str(resolve_location(base, "/c#new")) == "http://a/c#new"
    assert str(resolve_location(base, "/c#")) == "http://a/c#"


def test_resolve_keeps_port_for_scheme_relative_paths() -> None:
    base = parse_url("http://a:8080/b")
    assert str(resolve_location(base, "http:/x")) == "http://a:8080/x"
    assert str(resolve_location(base, "//other/x")) == "http://other/x"


@pytest.mark.parametrize(
    "location",
    [
        "http:///x",
        "//",
        "///x",
        "https:/x",
        "http://[::1",
        "/a\r\nb",
        "/a\tb",
        "/a\\b",
        "http://exa mple.com/x",  # a space in the host is never encoded
        "//exa mple.com/x",
        "http://a b/",
        "https://example.com :443/",
        "http://example.com: 80/",
        "\x00",
        "ftp://a/",
        "mailto:x@y",
        "http://u@a/",
    ],
)
def test_resolve_refuses(location: str) -> None:
    with pytest.raises(InvalidURL):
        resolve_location(parse_url("http://a/b"), location)


def test_host_encoder_refuses_bad_ipv6_literals() -> None:
    # urlsplit catches these first on current Pythons; older 3.11 releases did not.
    from trio_timehttp._urls import _encode_host

    with pytest.raises(InvalidURL, match="unterminated"):
        _encode_host("[::1", "http://[::1/")
    with pytest.raises(InvalidURL, match="bad IPv6"):
        _encode_host("[nope]", "http://[nope]/")


def test_split_oddities_are_handled(monkeypatch: pytest.MonkeyPatch) -> None:
    # Guards against urlsplit variations: an unterminated bracket that got
    # through, and a path without its leading slash.
    from urllib.parse import SplitResult

    import trio_timehttp._urls as urls

    monkeypatch.setattr(urls, "urlsplit", lambda u: SplitResult("http", "[::1", "/", "", ""))
    with pytest.raises(InvalidURL, match="unterminated"):
        urls.parse_url("http://whatever/")
    monkeypatch.setattr(urls, "urlsplit", lambda u: SplitResult("http", "a", "p", "", ""))
    assert urls.parse_url("http://whatever/").target == "/p"


# --------------------------------------------------------------------------
# Spaces (and the other characters servers put raw) in a Location


@pytest.mark.parametrize(
    ("location", "expected"),
    [
        ("../m o o.html", "../m%20o%20o.html"),
        ("/a b/c d?e f=g h#i j", "/a%20b/c%20d?e%20f=g%20h#i%20j"),
        ("  ", "%20%20"),
        ('/p?a=|{x}^"<>`', "/p?a=%7C%7Bx%7D%5E%22%3C%3E%60"),
        ("//host:8080/a b", "//host:8080/a%20b"),
        ("http://host/a b?c d", "http://host/a%20b?c%20d"),
        ("https://host?q w", "https://host?q%20w"),
        ("http://host#f g", "http://host#f%20g"),
        ("http:/a b", "http:/a%20b"),
        # the authority is left as it is: these stay unusable
        ("http://exa mple.com/a b", "http://exa mple.com/a%20b"),
        ("//a b", "//a b"),
        ("http://h{x}/", "http://h{x}/"),
        # control characters and backslashes are not this function's business
        ("/a\tb c", "/a\tb%20c"),
        ("/a\\b", "/a\\b"),
        ("/a%20b", "/a%20b"),
    ],
)
def test_encode_location(location: str, expected: str) -> None:
    assert encode_location(location) == expected


@pytest.mark.parametrize(
    ("location", "expected"),
    [
        ("../m o o.html", "http://a/b/m%20o%20o.html"),
        ("m o o.html", "http://a/b/c/m%20o%20o.html"),
        ("/x y/z", "http://a/x%20y/z"),
        ("?q=a b", "http://a/b/c/d?q=a%20b"),
        ("#a b", "http://a/b/c/d#a%20b"),
        ("//other/a b", "http://other/a%20b"),
        ("https://other:8443/a b?c d#e f", "https://other:8443/a%20b?c%20d#e%20f"),
        ("/café au lait", "http://a/caf%C3%A9%20au%20lait"),
        ("../../a b/../c d", "http://a/c%20d"),
    ],
)
def test_resolve_percent_encodes_spaces(location: str, expected: str) -> None:
    assert str(resolve_location(parse_url("http://a/b/c/d"), location)) == expected


@given(st.text(alphabet=" abc/.?#=", max_size=30))
def test_resolved_locations_never_carry_a_space(path: str) -> None:
    # Any path-ish Location with spaces resolves, and the result is wire-safe.
    resolved = resolve_location(parse_url("http://a/b/c"), "/x" + path)
    assert " " not in str(resolved)
    assert " " not in resolved.target
    assert parse_url(str(resolved)) == resolved


# --------------------------------------------------------------------------
# Dot segments (RFC 3986 section 5.2.4)


def rfc3986_remove_dot_segments(path: str) -> str:
    """The algorithm as RFC 3986 section 5.2.4 writes it (an input and an output buffer)."""
    inp, out = path, ""
    while inp:
        if inp.startswith("../"):
            inp = inp[3:]
        elif inp.startswith(("./", "/./")):  # rules A and B: drop "." (keep a "/")
            inp = inp[2:]
        elif inp == "/.":
            inp = "/"
        elif inp.startswith("/../"):
            inp = inp[3:]
            out = out[: out.rfind("/")] if "/" in out else ""
        elif inp == "/..":
            inp = "/"
            out = out[: out.rfind("/")] if "/" in out else ""
        elif inp in (".", ".."):
            inp = ""
        else:
            start = 1 if inp.startswith("/") else 0
            end = inp.find("/", start)
            end = len(inp) if end < 0 else end
            out, inp = out + inp[:end], inp[end:]
    return out


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/a/b/c/./../../g", "/a/g"),  # RFC 3986 section 5.2.4's own example
        ("/../a/./b", "/a/b"),
        ("/a/b/..", "/a/"),
        ("/a/b/.", "/a/b/"),
        ("/a/b/../", "/a/"),
        ("/..", "/"),
        ("/.", "/"),
        ("/../../..", "/"),
        ("/a/../../b", "/b"),
        ("/a//../b", "/a/b"),
        ("/a/..b/.c/c./...", "/a/..b/.c/c./..."),  # dots inside names are names
        ("/a/%2E%2E/b", "/a/%2E%2E/b"),  # escaped dots are the server's business
        ("/", "/"),
        ("/a/b", "/a/b"),
    ],
)
def test_remove_dot_segments(path: str, expected: str) -> None:
    assert remove_dot_segments(path) == expected
    assert rfc3986_remove_dot_segments(path) == expected  # the oracle agrees


@given(st.lists(st.sampled_from(["", ".", "..", "a", "b.", ".c", "...", "%2e"]), max_size=12))
def test_remove_dot_segments_matches_the_rfc_algorithm(segments: list[str]) -> None:
    path = "/" + "/".join(segments)
    result = remove_dot_segments(path)
    assert result == rfc3986_remove_dot_segments(path)
    assert result.startswith("/")
    assert remove_dot_segments(result) == result  # idempotent
    assert "." not in result.split("/")
    assert ".." not in result.split("/")


@pytest.mark.parametrize(
    ("url", "target", "text"),
    [
        ("http://h/../a/./b", "/a/b", "http://h/a/b"),
        ("http://h/a/b/..", "/a/", "http://h/a/"),
        ("http://h/./", "/", "http://h/"),
        ("http://h/..", "/", "http://h/"),
        ("http://h/a/./b?x=/../y/./z", "/a/b?x=/../y/./z", "http://h/a/b?x=/../y/./z"),
        ("http://h/a/../b#/../c", "/b", "http://h/b#/../c"),
        ("https://h:8443/x/y/../../z/.?", "/z/?", "https://h:8443/z/?"),
        ("http://h/é/../ü", "/%C3%BC", "http://h/%C3%BC"),
    ],
)
def test_parse_removes_dot_segments_from_the_path_only(url: str, target: str, text: str) -> None:
    parsed = parse_url(url)
    assert parsed.target == target
    assert str(parsed) == text


async def _one_request(url_path: str) -> bytes:
    """The request head a real server receives for ``fetch(base + url_path)``."""
    heads: list[bytes] = []

    async def answer(conn: EvilConnection) -> None:
        heads.append(await conn.recv_request())
        await conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")

    async with trio.open_nursery() as nursery:
        server = await nursery.start(serve_evil, answer)
        consumer = BytesConsumer()
        response = await fetch(server.base_url + url_path, consumer)
        nursery.cancel_scope.cancel()
    assert consumer.body == b"ok"
    assert response.status_code == 200
    assert len(heads) == 1
    return heads[0]


@pytest.mark.parametrize(
    ("path", "request_line"),
    [
        ("/../a/./b", b"GET /a/b HTTP/1.1\r\n"),
        ("/x/../../../etc/passwd", b"GET /etc/passwd HTTP/1.1\r\n"),
        ("/a/b/..?q=../.", b"GET /a/?q=../. HTTP/1.1\r\n"),
        ("/./", b"GET / HTTP/1.1\r\n"),
    ],
)
async def test_dot_segments_never_reach_the_wire(path: str, request_line: bytes) -> None:
    head = await _one_request(path)
    assert head.startswith(request_line)


@given(st.integers(1, 65535), st.integers(0, 12))
def test_leading_zeros_never_change_a_port(port: int, zeros: int) -> None:
    url = parse_url(f"http://h:{'0' * zeros}{port}/x")
    assert url.port == port
    assert url.authority == ("h" if port == 80 else f"h:{port}")


@given(st.integers(65536, 10**30), st.integers(0, 12))
def test_a_port_past_65535_is_out_of_range_with_any_zeros(port: int, zeros: int) -> None:
    with pytest.raises(InvalidURL, match="out of range"):
        parse_url(f"http://h:{'0' * zeros}{port}/")
