"""URL parsing, validation and Location resolution (``_urls``, pure)."""

from __future__ import annotations

import pytest

from trio_timehttp import InvalidURL
from trio_timehttp._urls import URL, parse_url, resolve_location


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
        ("http://example.com:123456/", "bad port"),
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
        "/a b",
        "/a\r\nb",
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
