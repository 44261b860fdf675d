"""Several relay processes on one PostgreSQL database (the real server on 127.0.0.1:5432)."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fakes import slack as fake_slack_module
from tests.fakes.slack import FakeSlack
from tests.process import (
    RelayProcess,
    assert_in_order,
    free_port,
    numbered_event,
    numbered_texts,
)
from tests.waiting import until

SECRET = "instances-test-secret"
RATE = 5.0  # messages per second to the channel, for both instances together


def write_config(directory: Path, database: str, slack: FakeSlack, port: int) -> Path:
    directory.mkdir(exist_ok=True)
    config = directory / "relay.yaml"
    config.write_text(f"""
server: {{host: 127.0.0.1, port: {port}}}
oneroute: {{secrets: ["{SECRET}"]}}
storage: "{database}"
delivery: {{lane_lease: 3s}}   # a dead instance's lane moves within 3 s, not the default 15
destinations:
  dest:
    type: slack
    token: {fake_slack_module.BOT_TOKEN}
    channel: {fake_slack_module.CHANNEL}
    api_url: {slack.api_url}
    max_per_second: {RATE}
    coalesce: false   # one message per event: what these tests count
routes:
  - to: [dest]
""")
    return config


@pytest.fixture
def pair(
    tmp_path: Path, pg_empty_url: str, fake_slack: FakeSlack
) -> Iterator[tuple[RelayProcess, RelayProcess]]:
    """Two relays on one empty database: their start-ups race to create the schema."""
    relays = []
    for name in ("a", "b"):
        port = free_port()
        config = write_config(tmp_path / name, pg_empty_url, fake_slack, port)
        relays.append(RelayProcess(config, port, SECRET))
    yield relays[0], relays[1]
    for relay in relays:
        relay.stop_quietly()


def received(slack: FakeSlack) -> list[str]:
    return numbered_texts([post.text for post in slack.messages])


async def test_two_instances_deliver_each_event_once_in_order_within_the_rate_limit(
    pair: tuple[RelayProcess, RelayProcess], fake_slack: FakeSlack
) -> None:
    a, b = pair
    fake_slack.enforce_rate_limit(messages=int(RATE), per=1.0)
    await asyncio.gather(a.start(), b.start())  # concurrent start-up migrations
    for n in range(6):
        for conversation in "xyz":  # alternate instances, even within a conversation
            relay = a if (n + ord(conversation)) % 2 else b
            assert await relay.post(numbered_event(conversation, n)) == 200
    await until(lambda: len(received(fake_slack)) >= 18, within=30)
    await asyncio.sleep(1.0)  # anything delivered twice would show up by now
    assert_in_order(received(fake_slack), "xyz", 6)
    assert fake_slack.count(429) == 0
    # One lane for the channel across both instances: their sends never bunch up.
    times = [post.at for post in fake_slack.messages]
    for first, fifth in zip(times, times[int(RATE):], strict=False):
        assert fifth - first >= 0.95, "more than RATE messages within one second"
    for relay in pair:
        relay.signal(signal.SIGTERM)
        assert await relay.wait() == 0


async def test_kill_9_of_the_delivering_instance_and_the_other_finishes(
    pair: tuple[RelayProcess, RelayProcess], fake_slack: FakeSlack
) -> None:
    a, b = pair
    await asyncio.gather(a.start(), b.start())
    # Three sends go through, the fourth is held (until the fake stops): the kill lands
    # mid-delivery however slowly a loaded machine posts, with that send in flight.
    fake_slack.faults.delay_next(3, seconds=0)
    fake_slack.faults.delay_next(1, seconds=600)
    for n in range(10):
        for conversation in "pq":
            relay = a if n % 2 else b
            assert await relay.post(numbered_event(conversation, n)) == 200
    await until(lambda: fake_slack.faults.scripted == 0, within=20)
    holder, other = (a, b) if "relay.lanes: sent" in a.output() else (b, a)
    await holder.kill()
    assert len(received(fake_slack)) == 3, "the kill should land mid-delivery"
    await until(lambda: len(set(received(fake_slack))) == 20, within=40)
    assert_in_order(received(fake_slack), "pq", 10, repeats=1)
    assert "relay.lanes: sent" in other.output()
    other.signal(signal.SIGTERM)
    assert await other.wait() == 0
