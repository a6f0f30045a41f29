"""``Request`` and ``Response`` (pure data)."""

from __future__ import annotations

import dataclasses

import pytest

from trio_timehttp import Headers, Request, Response


def test_request_normalises() -> None:
    r = Request("post", "http://example.com/", {"X-A": "1"}, bytearray(b"body"))
    assert r.method == "POST"
    assert r.url == "http://example.com/"
    assert isinstance(r.headers, Headers)
    assert r.headers.items() == [("x-a", "1")]
    assert r.body == b"body"
    assert type(r.body) is bytes


def test_request_defaults_and_equality() -> None:
    r = Request("GET", "http://example.com/")
    assert r.headers == Headers()
    assert r.body is None
    assert r == Request("get", "http://example.com/", [], None)
    assert hash(r) == hash(Request("GET", "http://example.com/"))


def test_request_is_frozen() -> None:
    r = Request("GET", "http://example.com/")
    with pytest.raises(dataclasses.FrozenInstanceError):
        r.method = "POST"  # type: ignore[misc]


def test_response_defaults() -> None:
    req = Request("GET", "http://example.com/")
    r = Response(url=req.url, request=req)
    assert r.status_code is None
    assert r.reason == ""
    assert r.http_version == "1.1"
    assert r.headers == Headers()
    assert r.history == []
    assert r.error is None
    other = Response(url=req.url, request=req)
    assert r.history is not other.history  # no shared mutable default
    assert r != other  # identity, not value, equality (eq=False)


def test_response_repr() -> None:
    req = Request("GET", "http://example.com/")
    ok = Response(url=req.url, request=req, status_code=200, reason="OK")
    assert repr(ok) == "<Response [200 OK] http://example.com/>"
    failed = Response(url=req.url, request=req, error=ConnectionRefusedError("refused"))
    assert (
        repr(failed)
        == "<Response [failed: ConnectionRefusedError('refused')] http://example.com/>"
    )
