"""``Headers``: case-insensitive, multi-valued, ordered, immutable (pure)."""

from __future__ import annotations

import pytest

from trio_timehttp import Headers


def test_construct_from_pairs_mapping_headers_and_bytes() -> None:
    from_pairs = Headers([("Content-Type", "text/html"), (b"X-A", b"\xe9")])
    assert from_pairs.items() == [("content-type", "text/html"), ("x-a", "é")]
    assert Headers({"A": "1", "B": "2"}).items() == [("a", "1"), ("b", "2")]
    assert Headers(from_pairs) == from_pairs
    assert Headers().items() == []
    assert Headers(None) == Headers([])


def test_lookup_is_case_insensitive_and_joins_repeats() -> None:
    h = Headers([("Set-Cookie", "a=1"), ("X", "y"), ("set-cookie", "b=2")])
    assert h["SET-COOKIE"] == "a=1, b=2"
    assert h.get("set-cookie") == "a=1, b=2"
    assert h.get_list("Set-Cookie") == ["a=1", "b=2"]
    assert h.get("missing") is None
    assert h.get("missing", "dflt") == "dflt"
    assert h.get_list("missing") == []
    with pytest.raises(KeyError):
        h["missing"]


def test_empty_value_is_present() -> None:
    h = Headers([("x-empty", "")])
    assert h["x-empty"] == ""
    assert h.get("x-empty", "dflt") == ""


def test_items_keys_iter_len_contains_bool() -> None:
    h = Headers([("B", "1"), ("a", "2"), ("b", "3")])
    assert h.items() == [("b", "1"), ("a", "2"), ("b", "3")]
    assert h.keys() == ["b", "a"]
    assert list(h) == ["b", "a"]
    assert len(h) == 3
    assert "A" in h
    assert "c" not in h
    assert 1 not in h
    assert h
    assert not Headers()


def test_equality_hash_repr() -> None:
    a = Headers([("A", "1")])
    b = Headers([("a", "1")])
    assert a == b
    assert hash(a) == hash(b)
    assert a != Headers([("a", "2")])
    assert a != {"a": "1"}
    assert a.__eq__({"a": "1"}) is NotImplemented
    assert repr(a) == "Headers([('a', '1')])"


def test_remove_and_replace_return_copies() -> None:
    h = Headers([("A", "1"), ("B", "2"), ("a", "3"), ("C", "4")])
    removed = h.remove("a", "C", "not-there")
    assert removed.items() == [("b", "2")]
    replaced = h.replace("A", "9")
    assert replaced.items() == [("b", "2"), ("c", "4"), ("a", "9")]
    assert h.items() == [("a", "1"), ("b", "2"), ("a", "3"), ("c", "4")]  # unchanged
    assert h.replace("new", "v")["new"] == "v"


def test_immutable() -> None:
    h = Headers([("a", "1")])
    with pytest.raises(AttributeError):
        h.other = 1  # type: ignore[attr-defined]
    with pytest.raises(TypeError):
        h["a"] = "2"  # type: ignore[index]
    items = h.items()
    items.append(("b", "2"))
    assert "b" not in h


def test_from_lower_keeps_pairs_as_given() -> None:
    h = Headers._from_lower([("x", "1"), ("y", "2")])
    assert h.items() == [("x", "1"), ("y", "2")]
