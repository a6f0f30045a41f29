"""The allow list of the time service (pure): parsing, and matching every kind of address."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trio_timehttp._access import AllowList


def test_parse_normalises_and_keeps_order() -> None:
    allow = AllowList.parse(["10.1.2.3/8", " ::1 ", "192.0.2.7", "2001:db8::/32"])
    assert str(allow) == "10.0.0.0/8, ::1/128, 192.0.2.7/32, 2001:db8::/32"


@pytest.mark.parametrize("bad", ["10.0.0.0/33", "example.com", "", "1.2.3", "::g", "10.0.0.0/-1"])
def test_bad_entries_name_themselves(bad: str) -> None:
    with pytest.raises(ValueError, match="is not an IP network") as info:
        AllowList.parse(["127.0.0.1", bad])
    assert repr(bad) in str(info.value)


def test_empty_list_and_a_bare_string_are_refused() -> None:
    with pytest.raises(ValueError, match="answer nobody"):
        AllowList.parse([])
    with pytest.raises(TypeError, match="not one string"):
        AllowList.parse("127.0.0.1")


@pytest.mark.parametrize(
    ("address", "allowed"),
    [
        ("127.0.0.1", True),
        ("127.255.255.255", True),
        ("128.0.0.1", False),
        ("192.0.2.7", True),
        ("192.0.2.8", False),
        ("::1", True),
        ("::2", False),
        ("2001:db8:ffff::1", True),
        ("2001:db9::1", False),
        ("fe80::1%lo", False),
        # An IPv4 client on a dual-stack IPv6 socket matches as IPv4.
        ("::ffff:127.0.0.9", True),
        ("::ffff:128.0.0.1", False),
        ("not an address", False),
        ("", False),
    ],
)
def test_allows(address: str, allowed: bool) -> None:
    allow = AllowList.parse(["127.0.0.0/8", "192.0.2.7", "::1", "2001:db8::/32"])
    assert allow.allows(address) is allowed


def test_zone_is_ignored() -> None:
    assert AllowList.parse(["fe80::/10"]).allows("fe80::1%eth0")


def test_families_do_not_leak_into_each_other() -> None:
    # ::/0 allows every IPv6 source, not IPv4 ones -- not even mapped ones.
    v6_only = AllowList.parse(["::/0"])
    assert v6_only.allows("2001:db8::1")
    assert not v6_only.allows("192.0.2.1")
    assert not v6_only.allows("::ffff:192.0.2.1")
    assert not AllowList.parse(["0.0.0.0/0"]).allows("::1")


networks = st.one_of(
    st.builds(ipaddress.IPv4Network, st.tuples(st.integers(0, 2**32 - 1), st.integers(0, 32)),
              strict=st.just(False)),
    st.builds(ipaddress.IPv6Network, st.tuples(st.integers(0, 2**128 - 1), st.integers(0, 128)),
              strict=st.just(False)),
)  # fmt: skip
addresses = st.one_of(st.ip_addresses(v=4), st.ip_addresses(v=6))


@given(st.lists(networks, min_size=1, max_size=5), addresses)
def test_matches_ipaddress_membership(
    nets: list[ipaddress.IPv4Network | ipaddress.IPv6Network],
    address: ipaddress.IPv4Address | ipaddress.IPv6Address,
) -> None:
    # The rule for all inputs: allowed exactly when some network contains the
    # address (an IPv4-mapped IPv6 address counts as its IPv4 address).
    allow = AllowList.parse([str(n) for n in nets])
    effective = address
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        effective = address.ipv4_mapped
    expected = any(effective.version == n.version and effective in n for n in nets)
    assert allow.allows(str(address)) is expected
