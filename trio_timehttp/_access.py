"""Access control for the time service: which source addresses may be answered (pure).

``AllowList.parse(["127.0.0.0/8", "::1"])`` builds the list once at start;
``allows(address)`` then decides per connection or datagram. An address is
what the socket API hands back as a peer's host: ``"192.0.2.1"``,
``"2001:db8::1"``, ``"fe80::1%lo"`` (the zone is ignored), or an IPv4 address
mapped into IPv6 (``"::ffff:192.0.2.1"``, which a dual-stack socket inherited
from systemd reports for IPv4 clients): a mapped address is matched as the
IPv4 address it carries, so ``--allow 192.0.2.0/24`` means the same on every
kind of socket.

Networks are kept as ``(network, mask)`` integer pairs per family: a check is
one address parse and a few integer ANDs. Only servers given a list pay it.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["AllowList"]

_V4_MAPPED_PREFIX = 0xFFFF << 32
_V4_MAPPED_MASK = ((1 << 96) - 1) << 32


@dataclass(frozen=True)
class AllowList:
    """The source networks that may be answered; empty tuples mean nobody of that family.

    ``v4``/``v6`` hold ``(network, mask)`` pairs of integers. Build it with
    `parse`; there is no "allow all" instance: no list (``None``) means all.
    """

    v4: tuple[tuple[int, int], ...]
    v6: tuple[tuple[int, int], ...]
    text: tuple[str, ...]

    @classmethod
    def parse(cls, networks: Iterable[str]) -> AllowList:
        """Parse CIDR strings (``"10.0.0.0/8"``, ``"::1"``, ``"2001:db8::/32"``).

        A bare address means that one address (/32 or /128). Host bits set
        below the prefix are ignored (``"10.1.2.3/8"`` is ``10.0.0.0/8``), as
        xinetd's ``only_from`` does. Raises ``ValueError`` naming the bad
        entry, or when the list is empty (that would answer nobody: pass
        ``None`` for everybody).
        """
        if isinstance(networks, str):
            raise TypeError("allow must be a list of CIDR strings, not one string")
        v4: list[tuple[int, int]] = []
        v6: list[tuple[int, int]] = []
        text: list[str] = []
        for entry in networks:
            try:
                net = ipaddress.ip_network(entry.strip(), strict=False)
            except (ValueError, TypeError, AttributeError) as exc:
                raise ValueError(f"allow: {entry!r} is not an IP network (CIDR)") from exc
            pair = (int(net.network_address), int(net.netmask))
            (v4 if net.version == 4 else v6).append(pair)
            text.append(str(net))
        if not text:
            raise ValueError("allow: an empty list would answer nobody (None allows everybody)")
        return cls(tuple(v4), tuple(v6), tuple(text))

    def allows(self, address: str) -> bool:
        """Whether ``address`` (a peer host as the socket API gives it) is in the list.

        An address that does not parse is not allowed.
        """
        try:
            ip = ipaddress.ip_address(address.partition("%")[0])
        except ValueError:
            return False
        value = int(ip)
        if ip.version == 6:
            if value & _V4_MAPPED_MASK == _V4_MAPPED_PREFIX:
                value &= 0xFFFFFFFF
                return any(value & mask == net for net, mask in self.v4)
            return any(value & mask == net for net, mask in self.v6)
        return any(value & mask == net for net, mask in self.v4)

    def __str__(self) -> str:
        return ", ".join(self.text)
