"""Client address and allowlist: the TCP peer, X-Forwarded-For only from trusted proxies."""

from __future__ import annotations

import pytest

from relay.ingest.clients import ClientPolicy, parse_address


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("203.0.113.7", "203.0.113.7"),
        (" 203.0.113.7 ", "203.0.113.7"),
        ("203.0.113.7:4711", "203.0.113.7"),
        ("::1", "::1"),
        ("[2001:db8::1]:443", "2001:db8::1"),
        ("::ffff:174.138.104.128", "174.138.104.128"),  # dual-stack sockets show IPv4 this way
        ("fe80::1%eth0", "fe80::1"),
        ("unknown", None),
        ("", None),
        ("300.1.1.1", None),
    ],
)
def test_parse_address(text: str, expected: str | None) -> None:
    address = parse_address(text)
    assert (str(address) if address else None) == expected


ONEROUTE = "174.138.104.128"


@pytest.mark.parametrize(
    ("allowed", "trusted", "peer", "forwarded", "client", "allows"),
    [
        # No proxies: the peer is the client; X-Forwarded-For is ignored (anyone can send it).
        ([ONEROUTE], [], ONEROUTE, [], ONEROUTE, True),
        ([ONEROUTE], [], "198.51.100.9", [ONEROUTE], "198.51.100.9", False),
        ([], [], "198.51.100.9", [], "198.51.100.9", True),  # an empty list allows everyone
        (["10.0.0.0/8"], [], "10.1.2.3", [], "10.1.2.3", True),
        (["2001:db8::/32"], [], "2001:db8::5", [], "2001:db8::5", True),
        ([ONEROUTE], [], f"::ffff:{ONEROUTE}", [], ONEROUTE, True),
        # Behind a trusted proxy: the rightmost hop that is not a trusted proxy.
        ([ONEROUTE], ["10.0.0.0/8"], "10.0.0.2", [ONEROUTE], ONEROUTE, True),
        ([ONEROUTE], ["10.0.0.0/8"], "10.0.0.2", [f"6.6.6.6, {ONEROUTE}"], ONEROUTE, True),
        # A client cannot forge its way in by putting the allowed IP to the left.
        ([ONEROUTE], ["10.0.0.0/8"], "10.0.0.2", [f"{ONEROUTE}, 6.6.6.6"], "6.6.6.6", False),
        # Chains of trusted proxies are skipped, across repeated headers.
        ([ONEROUTE], ["10.0.0.0/8"], "10.0.0.2", [ONEROUTE, "10.0.0.7"], ONEROUTE, True),
        # A peer that is not a trusted proxy: its X-Forwarded-For is not believed.
        ([ONEROUTE], ["10.0.0.0/8"], "6.6.6.6", [ONEROUTE], "6.6.6.6", False),
        # Garbage in a hop: the client cannot be told, so only an open list allows.
        ([ONEROUTE], ["10.0.0.0/8"], "10.0.0.2", ["not-an-ip"], None, False),
        ([], ["10.0.0.0/8"], "10.0.0.2", ["not-an-ip"], None, True),
        # Only trusted hops: the leftmost is as far as we can see.
        (["10.0.0.0/8"], ["10.0.0.0/8"], "10.0.0.2", ["10.0.0.9"], "10.0.0.9", True),
        ([ONEROUTE], ["10.0.0.0/8"], "10.0.0.2", [], "10.0.0.2", False),
        ([ONEROUTE], [], None, [], None, False),
    ],
)
def test_client_policy(
    allowed: list[str], trusted: list[str], peer: str | None, forwarded: list[str],
    client: str | None, allows: bool,
) -> None:
    policy = ClientPolicy(allowed, trusted)
    address = policy.client_address(peer, forwarded)
    assert (str(address) if address else None) == client
    assert policy.allows(address) is allows
