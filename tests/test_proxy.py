"""The pure proxy rules: proxy URLs, the environment as curl reads it, CONNECT.

Tables for the rules, byte-fed CONNECT replies (whole, one byte at a time,
with trailing data), and hypothesis for "credentials never show".
"""

from __future__ import annotations

import base64
import string
from urllib.parse import quote

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trio_timehttp import ConnectError, InvalidURL, ProtocolError, ProxyError
from trio_timehttp._proxy import (
    DEFAULT_PROXY_PORT,
    ConnectReply,
    Proxy,
    ProxyPolicy,
    connect_request,
    is_loopback,
    no_proxy_matches,
    parse_proxy,
    redact,
)
from trio_timehttp._urls import parse_url


def basic(user: str, password: str) -> bytes:
    return b"Basic " + base64.b64encode(f"{user}:{password}".encode())


# --- proxy URLs ---------------------------------------------------------------

PARSE_OK = [
    ("http://proxy.example:3128", "proxy.example", 3128, None),
    ("http://Proxy.Example:3128/", "proxy.example", 3128, None),
    ("HTTP://proxy:8080", "proxy", 8080, None),
    ("proxy.example:3128", "proxy.example", 3128, None),  # no scheme: http, as curl
    ("http://proxy.example", "proxy.example", DEFAULT_PROXY_PORT, None),  # curl: 1080
    ("http://proxy.example:", "proxy.example", DEFAULT_PROXY_PORT, None),
    ("http://[::1]:3128", "::1", 3128, None),
    ("http://[::1]", "::1", DEFAULT_PROXY_PORT, None),
    ("http://127.0.0.1:8888", "127.0.0.1", 8888, None),
    ("http://user:pass@proxy:3128", "proxy", 3128, basic("user", "pass")),
    ("http://user@proxy:3128", "proxy", 3128, basic("user", "")),
    ("http://user:@proxy:3128", "proxy", 3128, basic("user", "")),
    ("http://:pass@proxy:3128", "proxy", 3128, basic("", "pass")),
    ("http://us%40er:p%3As%2Fs@proxy:3128", "proxy", 3128, basic("us@er", "p:s/s")),
    ("http://user:p@ss@proxy:3128", "proxy", 3128, basic("user", "p@ss")),  # last '@'
    ("http://%C3%BCser:p%C3%A4ss@proxy:1", "proxy", 1, basic("üser", "päss")),
]


@pytest.mark.parametrize(("url", "host", "port", "authorization"), PARSE_OK)
def test_parse_proxy(url: str, host: str, port: int, authorization: bytes | None) -> None:
    proxy = parse_proxy(url)
    assert (proxy.host, proxy.port, proxy.authorization) == (host, port, authorization)


PARSE_BAD = [
    ("https://proxy:3128", "only http:// proxies"),
    ("socks5://proxy:1080", "SOCKS"),
    ("socks5h://u:secret@proxy:1080", "SOCKS"),
    ("ftp://proxy", "only http:// proxies"),
    ("http://proxy:3128/path", "no path"),
    ("http://proxy:3128?q", "no path"),
    ("http://proxy:3128#f", "no path"),
    ("http://", "no host"),
    ("http://u:secret@", "no host"),
    ("http://u:secret@:3128", "bad proxy URL"),
    ("http://u:secret@proxy:99999", "out of range"),
    ("http://u:secret@proxy:12x", "bad port"),
    ("http://u:secret@pro xy:1", "bad proxy URL"),
    ("http://u:secret@[::1:1", "bad proxy URL"),
    ("http://a%3Ab:secret@proxy:1", "contains ':'"),
    ("http://u:sec/ret@proxy:1", "no path"),  # a raw '/' in the password
    ("http://u:sec?ret@proxy:1", "no path"),
    ("http://u:sec#ret@proxy:1", "no path"),
    ("http://u:secret%FF@proxy:1", "not UTF-8"),
]


@pytest.mark.parametrize(("url", "message"), PARSE_BAD)
def test_parse_proxy_rejects(url: str, message: str) -> None:
    with pytest.raises(InvalidURL, match=message) as info:
        parse_proxy(url)
    assert "secret" not in str(info.value)
    assert "sec" not in str(info.value).replace("SOCKS", "")
    assert "secret" not in repr(info.value.__cause__)
    assert info.value.__cause__ is None or "secret" not in str(info.value.__cause__)


def test_parse_proxy_rejects_non_str() -> None:
    with pytest.raises(InvalidURL, match="must be a str"):
        parse_proxy(b"http://proxy:1")  # type: ignore[arg-type]


def test_proxy_str_and_repr_hide_credentials() -> None:
    proxy = parse_proxy("http://alice:s3cret@proxy.example:3128")
    assert str(proxy) == "http://proxy.example:3128"
    assert repr(proxy) == "Proxy('http://proxy.example:3128', with credentials)"
    assert repr(parse_proxy("http://[::1]:3")) == "Proxy('http://[::1]:3')"
    assert Proxy("::1", 3).authority == "[::1]:3"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("http://u:p@host:1", "http://***@host:1"),
        ("http://u:p@h@host:1/x", "http://***@host:1/x"),
        ("http://u:pa/ss@host:1", "http://***@host:1"),
        ("http://u:pa#ss@host:1", "http://***@host:1"),
        ("u:p@host:1", "***@host:1"),
        ("http://host:1", "http://host:1"),
        ("", ""),
    ],
)
def test_redact(url: str, shown: str) -> None:
    assert redact(url) == shown


# --- NO_PROXY and loopback -----------------------------------------------------------

NO_PROXY = [
    # (host, port, NO_PROXY, direct?)
    ("example.com", 80, "*", True),
    ("10.1.2.3", 80, "*", True),
    ("example.com", 80, " *", False),  # curl: only the whole value "*"
    ("example.com", 80, "a.com,*", False),
    ("example.com", 80, "", False),
    ("example.com", 80, "example.com", True),
    ("EXAMPLE.com", 80, "Example.COM", True),
    ("www.example.com", 80, "example.com", True),
    ("www.example.com", 80, ".example.com", True),
    ("example.com", 80, ".example.com", True),  # curl drops the leading dot
    ("notexample.com", 80, "example.com", False),
    ("notexample.com", 80, ".example.com", False),
    ("example.com", 80, "www.example.com", False),
    ("example.com.", 80, "example.com", True),  # trailing dots ignored
    ("example.com", 80, "example.com.", True),
    ("a.example.com", 443, "foo.org, example.com ,bar", True),
    ("a.example.com", 443, ",,foo.org,,,example.com,", True),
    ("a.example.com", 443, "foo.org", False),
    ("example.com", 8080, "example.com:8080", True),  # ours: a port matches that port
    ("example.com", 80, "example.com:8080", False),
    ("example.com", 80, "example.com:x", False),
    ("10.1.2.3", 80, "10.1.2.3", True),
    ("10.1.2.3", 80, "10.1.2.4", False),
    ("10.1.2.3", 80, "10.0.0.0/8", True),
    ("11.1.2.3", 80, "10.0.0.0/8", False),
    ("192.168.7.9", 80, "192.168.0.0/16", True),
    ("10.1.2.3", 80, "10.1.2.0/33", False),
    ("10.1.2.3", 80, "10.1.2.3:8080", False),
    ("10.1.2.3", 8080, "10.1.2.3:8080", True),
    ("10.1.2.3", 80, "2.3", False),  # an IP target never matches by name suffix
    ("10.1.2.3", 80, "1.2.3", False),
    ("example.com", 80, "10.0.0.0/8", False),
    ("::1", 80, "::1", True),
    ("::1", 80, "0:0:0:0:0:0:0:1", True),  # any spelling of the address
    ("fe80::1", 80, "fe80::/10", True),
    ("fe90::1", 80, "fe80::/16", False),
    ("::1", 8080, "[::1]:8080", True),
    ("::1", 80, "[::1]:8080", False),
    ("::1", 80, "[::1]", True),
    ("::1", 80, "[::1]x", False),
    ("10.1.2.3", 80, "::/0", False),  # the families never mix
    ("10.1.2.3", 80, "0.0.0.0/0", True),  # ours: /0 is every address
    ("xn--bcher-kva.example", 80, "bücher.example", True),  # IDNA
    ("example.com", 80, "\udcff.com", False),
]


@pytest.mark.parametrize(("host", "port", "no_proxy", "direct"), NO_PROXY)
def test_no_proxy(host: str, port: int, no_proxy: str, direct: bool) -> None:
    assert no_proxy_matches(host, port, no_proxy) is direct


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("localhost", True),
        ("LOCALHOST.", True),
        ("api.localhost", True),
        ("localhost.example", False),
        ("127.0.0.1", True),
        ("127.9.8.7", True),
        ("::1", True),
        ("::ffff:127.0.0.1", True),
        ("128.0.0.1", False),
        ("::2", False),
        ("example.com", False),
    ],
)
def test_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


# --- choosing the proxy -------------------------------------------------------------

P1, P2, P3, P4 = ("http://p1:1", "http://p2:2", "http://p3:3", "http://p4:4")
CHOOSE = [
    # (env, url, chosen proxy or None)
    ({"http_proxy": P1}, "http://example.com/", P1),
    ({"HTTP_PROXY": P1}, "http://example.com/", None),  # httpoxy: upper case ignored
    ({"HTTP_PROXY": P1, "ALL_PROXY": P2}, "http://example.com/", P2),
    ({"http_proxy": P1}, "https://example.com/", None),  # http_proxy is for http only
    ({"https_proxy": P1}, "https://example.com/", P1),
    ({"HTTPS_PROXY": P1}, "https://example.com/", P1),
    ({"https_proxy": P1, "HTTPS_PROXY": P2}, "https://example.com/", P1),  # lower first
    ({"https_proxy": P1}, "http://example.com/", None),
    ({"all_proxy": P3}, "http://example.com/", P3),
    ({"ALL_PROXY": P3}, "https://example.com/", P3),
    ({"all_proxy": P3, "ALL_PROXY": P4}, "https://example.com/", P3),
    ({"https_proxy": P1, "all_proxy": P3}, "https://example.com/", P1),
    ({"https_proxy": "", "HTTPS_PROXY": P2}, "https://example.com/", P2),  # empty = unset
    ({"https_proxy": "", "all_proxy": P3}, "https://example.com/", P3),
    ({"http_proxy": P1, "no_proxy": "example.com"}, "http://www.example.com/", None),
    ({"http_proxy": P1, "NO_PROXY": "example.com"}, "http://www.example.com/", None),
    (
        {"http_proxy": P1, "no_proxy": "other", "NO_PROXY": "example.com"},
        "http://example.com/",
        P1,
    ),
    (
        {"http_proxy": P1, "no_proxy": "", "NO_PROXY": "example.com"},
        "http://example.com/",
        None,
    ),
    ({"http_proxy": P1, "no_proxy": "*"}, "http://example.com/", None),
    ({"all_proxy": P3, "no_proxy": "10.0.0.0/8"}, "https://10.2.3.4/", None),
    ({"all_proxy": P3, "no_proxy": "10.0.0.0/8"}, "https://11.2.3.4/", P3),
    ({"all_proxy": P3}, "http://localhost:8080/", None),  # loopback: never from env
    ({"all_proxy": P3}, "http://127.0.0.1/", None),
    ({"all_proxy": P3}, "https://[::1]/", None),
    ({"all_proxy": P3}, "http://app.localhost/", None),
    ({}, "http://example.com/", None),
    ({"PATH": "/bin"}, "http://example.com/", None),
]


@pytest.mark.parametrize(("env", "url", "chosen"), CHOOSE)
def test_choose_from_environment(env: dict[str, str], url: str, chosen: str | None) -> None:
    policy = ProxyPolicy.from_settings(None, True, env)
    proxy = policy.choose(parse_url(url))
    assert (None if proxy is None else str(proxy)) == chosen


def test_explicit_proxy_applies_to_every_request() -> None:
    env = {"http_proxy": P1, "no_proxy": "*"}
    policy = ProxyPolicy.from_settings("http://u:p@explicit:9", True, env)
    for url in ("http://example.com/", "https://example.com/", "http://127.0.0.1/"):
        proxy = policy.choose(parse_url(url))
        assert proxy is not None
        assert str(proxy) == "http://explicit:9"


def test_trust_env_false_ignores_the_environment() -> None:
    policy = ProxyPolicy.from_settings(None, False, {"http_proxy": P1, "all_proxy": P3})
    assert policy.choose(parse_url("http://example.com/")) is None


def test_policy_keeps_only_proxy_variables() -> None:
    policy = ProxyPolicy.from_settings(None, True, {"http_proxy": P1, "SECRET": "Zq-value"})
    assert dict(policy.environ) == {"http_proxy": P1}
    assert "Zq-value" not in repr(policy)


def test_bad_proxy_in_environment_names_the_variable() -> None:
    policy = ProxyPolicy.from_settings(None, True, {"all_proxy": "socks5://u:secret@h:1"})
    with pytest.raises(InvalidURL, match=r"^all_proxy: SOCKS .*trust_env=False") as info:
        policy.choose(parse_url("https://example.com/"))
    assert "secret" not in str(info.value)


def test_explicit_bad_proxy_fails_at_once() -> None:
    with pytest.raises(InvalidURL, match="only http://"):
        ProxyPolicy.from_settings("https://proxy:1", True, {})


# --- CONNECT ----------------------------------------------------------------------


def test_connect_request_bytes() -> None:
    url = parse_url("https://Example.com/path?q")
    assert connect_request(url, Proxy("p", 1)) == (
        b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n"
    )
    url6 = parse_url("https://[::1]:8443/")
    with_auth = parse_proxy("http://user:pass@p:1")
    assert connect_request(url6, with_auth) == (
        b"CONNECT [::1]:8443 HTTP/1.1\r\nHost: [::1]:8443\r\n"
        b"Proxy-Authorization: Basic dXNlcjpwYXNz\r\n\r\n"
    )


def reply(proxy: Proxy | None = None, **caps: int) -> ConnectReply:
    return ConnectReply(proxy or Proxy("proxy", 3128), "example.com:443", **caps)


def feed_all(data: bytes, how: str, proxy: Proxy | None = None, **caps: int) -> bytes | None:
    """Feed ``data`` whole or byte by byte; the first non-None result."""
    r = reply(proxy, **caps)
    if how == "whole":
        return r.feed(data)
    for i in range(len(data)):
        result = r.feed(data[i : i + 1])
        if result is not None:
            return result + data[i + 1 :]  # the rest is not the reply's to read
    return None


HOW = ["whole", "bytewise"]

TUNNEL_OK = [
    b"HTTP/1.1 200 Connection established\r\n\r\n",
    b"HTTP/1.0 200 Connection established\r\nProxy-agent: tinyproxy/1.11.1\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
    b"HTTP/1.1 200\r\n\r\n",
    b"HTTP/1.1 204 \r\n\r\n",
    b"HTTP/1.1 200 OK\n\n",  # bare LF
    b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early\r\nLink: </x>\r\n\r\n"
    b"HTTP/1.1 200 OK\r\n\r\n",
]


@pytest.mark.parametrize("how", HOW)
@pytest.mark.parametrize("head", TUNNEL_OK)
def test_connect_reply_opens_the_tunnel(head: bytes, how: str) -> None:
    assert feed_all(head, how) == b""
    assert feed_all(head + b"\x16\x03\x01", how) == b"\x16\x03\x01"  # trailing bytes kept


def test_connect_reply_incomplete_then_done() -> None:
    r = reply()
    assert r.feed(b"HTTP/1.1 200 OK\r\n") is None
    assert r.feed(b"") is None
    assert r.feed(b"\r\n") == b""
    with pytest.raises(RuntimeError):
        r.feed(b"more")


AUTH_REQUIRED = r"^proxy http://proxy:3128 requires authentication \(407 Proxy Auth Required\)$"
REFUSED = [
    (b"HTTP/1.1 407 Proxy Auth Required\r\nProxy-Authenticate: Basic\r\n\r\n",
     None, AUTH_REQUIRED),
    (b"HTTP/1.1 407 Nope\r\n\r\n", parse_proxy("http://u:secret@proxy:3128"),
     r"^proxy http://proxy:3128 rejected the credentials \(407 Nope\)$"),
    (b"HTTP/1.1 407\r\n\r\n", None, r"requires authentication \(407\)$"),
    (b"HTTP/1.0 403 Forbidden\r\nContent-Length: 5\r\n\r\nnope!", None,
     r"^proxy http://proxy:3128 refused CONNECT example.com:443: 403 Forbidden$"),
    (b"HTTP/1.1 502 Bad\xffGateway\r\n\r\n", None, r"CONNECT example.com:443: 502 Bad\?Gateway$"),
    (b"HTTP/1.1 301 Moved\r\nLocation: /x\r\n\r\n", None, r": 301 Moved$"),
]  # fmt: skip


@pytest.mark.parametrize("how", HOW)
@pytest.mark.parametrize(("head", "proxy", "message"), REFUSED)
def test_connect_reply_refused(head: bytes, proxy: Proxy | None, message: str, how: str) -> None:
    with pytest.raises(ProxyError, match=message) as info:
        feed_all(head, how, proxy)
    assert isinstance(info.value, ConnectError)
    assert "secret" not in str(info.value)


MALFORMED = [
    (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", "Content-Length > 0"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", "Transfer-Encoding"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n", "bad Content-Length"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nContent-Length: 1\r\n\r\n", "bad Content-Length"),
    (b"HTTP/2 200\r\n\r\n", "malformed status line"),
    (b"SSH-2.0-OpenSSH_9\r\n\r\n", "malformed status line"),
    (b"HTTP/1.1 20 OK\r\n\r\n", "malformed status line"),
    (b"HTTP/1.1 200 OK\r\nNo colon here\r\n\r\n", "malformed header line"),
    (b"HTTP/1.1 200 OK\r\nA: b\r\n folded\r\n\r\n", "malformed header line"),
    (b"HTTP/1.1 200 OK\r\nBad\x00Name: b\r\n\r\n", "malformed header line"),
    (b"HTTP/1.1 200 OK\r\nA: b\x00c\r\n\r\n", "malformed header line"),
    (b"HTTP/1.1 502 Bad\x01Gateway\r\n\r\n", "malformed status line"),
]


@pytest.mark.parametrize("how", HOW)
@pytest.mark.parametrize(("head", "message"), MALFORMED)
def test_connect_reply_malformed(head: bytes, message: str, how: str) -> None:
    with pytest.raises(ProtocolError, match=message) as info:
        feed_all(head, how)
    assert "proxy http://proxy:3128" in str(info.value)
    assert "CONNECT example.com:443" in str(info.value)


@pytest.mark.parametrize(
    "start", [b"SSH-2.0-OpenSSH_9.2\r\n", b"hello world", b"HTTP/2", b"HTTP/1.1 200 OK\x01\r\n"]
)
def test_connect_reply_fails_as_soon_as_it_cannot_be_http(start: bytes) -> None:
    # Another service on the proxy's port that then stays silent: the reply
    # fails on these bytes, without waiting for a head end that never comes.
    with pytest.raises(ProtocolError, match="malformed status line"):
        reply().feed(start)
    r = reply()
    assert r.feed(b"HTTP/1") is None  # a good start waits for more


@pytest.mark.parametrize("how", HOW)
def test_connect_reply_caps(how: str) -> None:
    endless = b"HTTP/1.1 200 OK\r\n" + b"X: y\r\n" * 100
    with pytest.raises(ProtocolError, match="over 256 bytes"):
        feed_all(endless, how, max_header_bytes=256)
    many = b"HTTP/1.1 200 OK\r\n" + b"X: y\r\n" * 5 + b"\r\n"
    with pytest.raises(ProtocolError, match="more than 4 header fields"):
        feed_all(many, how, max_header_fields=4)
    assert feed_all(many, how, max_header_fields=5) == b""
    interim = b"HTTP/1.1 100 Continue\r\n\r\n" * 3 + b"HTTP/1.1 200 OK\r\n\r\n"
    with pytest.raises(ProtocolError, match="more than 2 1xx"):
        feed_all(interim, how, max_informational=2)
    assert feed_all(interim, how, max_informational=3) == b""


def test_connect_reply_head_over_cap_in_one_piece() -> None:
    big = b"HTTP/1.1 200 OK\r\nX: " + b"y" * 300 + b"\r\n\r\n"
    with pytest.raises(ProtocolError, match="over 256 bytes"):
        reply(max_header_bytes=256).feed(big)


# --- credentials never show -----------------------------------------------------------

# "Zq" keeps a generated secret from being a substring of the fixed text by chance.
SECRET = st.text(string.ascii_letters + string.digits + "!$&'()*+,;=-._~:@/?#% é", min_size=4).map(
    lambda s: "Zq" + s
)


@given(user=SECRET.filter(lambda u: ":" not in u), password=SECRET)
def test_credentials_never_shown(user: str, password: str) -> None:
    userinfo = f"{quote(user, safe='')}:{quote(password, safe='')}"
    proxy = parse_proxy(f"http://{userinfo}@proxy.example:3128")
    assert proxy.authorization == basic(user, password)
    texts = [str(proxy), repr(proxy)]
    for bad in (f"http://{userinfo}@pro xy:1", f"http://{userinfo}@proxy:0",
                f"https://{userinfo}@proxy:1", f"socks5://{userinfo}@proxy:1",
                f"http://{userinfo}@proxy:1/path"):  # fmt: skip
        with pytest.raises(InvalidURL) as info:
            parse_proxy(bad)
        texts.append(str(info.value))
        policy = ProxyPolicy.from_settings(None, True, {"https_proxy": bad})
        with pytest.raises(InvalidURL) as info:
            policy.choose(parse_url("https://example.com/"))
        texts.append(str(info.value))
    for head in (b"HTTP/1.1 407 x\r\n\r\n", b"HTTP/1.1 403 x\r\n\r\n",
                 b"HTTP/1.1 200 x\r\nContent-Length: 9\r\n\r\n", b"junk\r\n\r\n"):  # fmt: skip
        with pytest.raises((ProxyError, ProtocolError)) as info:
            reply(proxy).feed(head)
        texts.append(str(info.value))
    for text in texts:
        assert user not in text
        assert password not in text
        assert quote(password, safe="") not in text


@given(user=SECRET.filter(lambda u: ":" not in u and "@" not in u), password=SECRET)
def test_raw_credentials_never_shown(user: str, password: str) -> None:
    # Unencoded, as people type them: whatever parsing makes of it, no message
    # shows the password (nor the user name).
    for url in (f"http://{user}:{password}@proxy.example:3128",
                f"{user}:{password}@proxy.example", f"https://{user}:{password}@p:1"):  # fmt: skip
        try:
            proxy = parse_proxy(url)
        except InvalidURL as exc:
            text = str(exc)
        else:
            text = str(proxy) + repr(proxy)
        assert password not in text
        assert user not in text
