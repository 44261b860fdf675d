"""Pacing with an injected clock: exact, deterministic schedules."""

from __future__ import annotations

import pytest

from relay.config.load import parse_config
from relay.destinations import limits_for
from relay.pacing import Limit, Pacer


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


async def send_times(pacer: Pacer, clock: FakeClock, limits: list[Limit], n: int) -> list[float]:
    times = []
    for _ in range(n):
        await pacer.wait(limits)
        times.append(round(clock.now - 1000.0, 6))
    return times


async def test_one_per_second_per_channel() -> None:
    clock = FakeClock()
    pacer = Pacer(clock, clock.sleep)
    times = await send_times(pacer, clock, [Limit("slack:C1", 1.0)], 5)
    assert times == [0, 1, 2, 3, 4]


async def test_telegram_group_twenty_per_minute_and_chat_one_per_second() -> None:
    clock = FakeClock()
    pacer = Pacer(clock, clock.sleep)
    group = [Limit("tg:-100", 20 / 60), Limit("bot", 30.0, burst=30)]
    assert await send_times(pacer, clock, group, 4) == [0, 3, 6, 9]
    private = [Limit("tg:42", 1.0), Limit("bot", 30.0, burst=30)]
    assert await send_times(pacer, clock, private, 2) == [9, 10]


async def test_shared_bot_limit_across_chats_with_burst() -> None:
    clock = FakeClock()
    pacer = Pacer(clock, clock.sleep)
    sends = [pacer.reserve([Limit(f"chat:{i}", 1.0), Limit("bot", 30.0, burst=30)])
             for i in range(61)]
    # 30 back to back (the burst), then one every 1/30 s.
    assert sends[:30] == [0.0] * 30
    assert sends[30] == pytest.approx(1 / 30)
    assert sends[60] == pytest.approx(31 / 30)


async def test_idle_time_is_not_banked_beyond_the_burst() -> None:
    clock = FakeClock()
    pacer = Pacer(clock, clock.sleep)
    limit = [Limit("c", 1.0)]
    await pacer.wait(limit)
    clock.now += 100  # a quiet spell
    assert await send_times(pacer, clock, limit, 3) == [100, 101, 102]


async def test_hold_after_a_429() -> None:
    clock = FakeClock()
    pacer = Pacer(clock, clock.sleep)
    limit = [Limit("c", 1.0)]
    await pacer.wait(limit)
    pacer.hold(limit, 7.5)
    assert await send_times(pacer, clock, limit, 2) == [7.5, 8.5]


def test_documented_platform_limits() -> None:
    config = parse_config(
        """
oneroute: {secrets: ["0123456789"]}
destinations:
  slack: {type: slack, token: xoxb-0123456789, channel: C1}
  hook: {type: slack, webhook_url: "https://hooks.slack.com/services/T/B/XXXXXXXX"}
  group: {type: telegram, token: "123:abcdefgh", chat_id: -1001}
  private: {type: telegram, token: "123:abcdefgh", chat_id: 42}
  custom: {type: telegram, token: "123:abcdefgh", chat_id: 42, max_per_second: 5}
  terminal: {type: console}
""",
        environ={},
    )
    limits = {name: limits_for(name, d) for name, d in config.destinations.items()}
    assert [lim.rate for lim in limits["slack"]] == [1.0]
    assert [lim.rate for lim in limits["hook"]] == [1.0]
    assert [lim.rate for lim in limits["group"]] == [pytest.approx(1 / 3), 30.0]
    assert [lim.rate for lim in limits["private"]] == [1.0, 30.0]
    assert limits["group"][1].key == limits["private"][1].key  # one bot, one shared limit
    assert [lim.rate for lim in limits["custom"]] == [5.0]
    assert limits["terminal"] == ()
    for destination in limits.values():  # keys never reveal a token or a webhook URL
        for limit in destination:
            assert "abcdefgh" not in limit.key and "XXXXXXXX" not in limit.key
            assert "0123456789" not in limit.key


async def test_slow_send_counts_from_its_arrival_not_its_slot() -> None:
    # A send that takes longer than it was scheduled (the first one opens a connection)
    # must not leave the next sends bunched within the platform's window.
    clock = FakeClock()
    pacer = Pacer(clock, clock.sleep)
    group = [Limit("tg:-100", 20 / 60)]
    await pacer.wait(group)
    clock.now += 0.5  # the send took half a second
    pacer.sent(group)
    assert await send_times(pacer, clock, group, 2) == [3.5, 6.5]
