"""Who is calling: the client address, and whether it may post events.

The client is the TCP peer — or, only when that peer is a trusted proxy, the rightmost
X-Forwarded-For hop that is not itself a trusted proxy (the hops to its left are written
by the client and cannot be believed). Then `allowed_ips` decides; an empty list allows
every address.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Iterable, Sequence

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@functools.lru_cache(maxsize=4096)  # a webhook sender posts from few addresses
def parse_address(text: str) -> IPAddress | None:
    """An IP from a peer name or a forwarded hop (`1.2.3.4`, `1.2.3.4:80`, `[::1]:80`)."""
    text = text.strip().strip('"')
    if text.startswith("["):
        text = text[1 : text.find("]")] if "]" in text else text[1:]
    elif text.count(":") == 1:
        text = text.split(":", 1)[0]
    try:
        address = ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return None
    # A dual-stack socket shows IPv4 peers as ::ffff:a.b.c.d; the allowlist says a.b.c.d.
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _networks(texts: Iterable[str]) -> tuple[IPNetwork, ...]:
    return tuple(ipaddress.ip_network(text, strict=False) for text in texts)


class ClientPolicy:
    def __init__(self, allowed_ips: Sequence[str], trusted_proxies: Sequence[str]) -> None:
        self.allowed = _networks(allowed_ips)
        self.trusted = _networks(trusted_proxies)

    def _is_trusted(self, address: IPAddress) -> bool:
        return any(address in network for network in self.trusted)

    def client_address(self, peer: str | None, forwarded_for: Sequence[str]) -> IPAddress | None:
        """The address to judge; None when it cannot be known (then only an open list allows)."""
        address = parse_address(peer) if peer else None
        if address is None or not self.trusted or not self._is_trusted(address):
            return address
        hops = [hop for header in forwarded_for for hop in header.split(",") if hop.strip()]
        for hop in reversed(hops):
            hop_address = parse_address(hop)
            if hop_address is None:
                return None  # a forged or garbled hop: the client cannot be told
            if not self._is_trusted(hop_address):
                return hop_address
            address = hop_address
        return address

    def allows(self, address: IPAddress | None) -> bool:
        if not self.allowed:
            return True
        return address is not None and any(address in network for network in self.allowed)
