"""End to end in one process: HTTP in, real SDKs out to the fake Slack and Telegram servers.

The relay runs whole (ingest, SQLite store, lanes, senders); only the platforms are fakes,
and they enforce the platforms' rules. Timing figures here are generous bounds for a slow
CI machine, not performance assertions.
"""

from __future__ import annotations

import asyncio
import json
import re
import textwrap
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from relay import service as relay_service
from relay.config.load import parse_config
from relay.ingest.signature import sign
from relay.service import Relay
from relay.store.sqlite import SQLiteStore
from tests.fakes import slack as fake_slack_module
from tests.fakes import telegram as fake_telegram_module
from tests.fakes.slack import FakeSlack
from tests.fakes.telegram import FakeTelegram
from tests.waiting import until, until_async

SECRET = "delivery-test-secret"


def event(conversation: str, n: int, **message: Any) -> bytes:
    return json.dumps({
        "event": "newMessage",
        "message": {"sender": {"name": f"Customer {conversation}", "authUser": False},
                    "content": f"{conversation}-msg-{n}", "conversation_id": conversation,
                    **message},
        "conversation": {"id": conversation, "status": "open",
                         "Channel": {"name": "Line", "medium": "WHATSAPP"}},
    }).encode()


async def dead_count_is(store: Any, count: int) -> bool:
    return bool(await store.dead_count() == count)


async def nothing_pending(store: Any) -> bool:
    return not await store.backlog()


def numbers(texts: list[str], conversation: str) -> list[int]:
    return [int(m) for t in texts for m in re.findall(rf"{conversation}-msg-(\d+)", t)]


class Harness:
    """A running relay and an HTTP client for its endpoint."""

    def __init__(self, relay: Relay, client: TestClient[Any, Any]) -> None:
        self.relay = relay
        self.client = client

    async def post(self, body: bytes) -> int:
        response = await self.client.post(
            "/webhooks/oneroute", data=body, headers={"x-oneroute-signature": sign(SECRET, body)}
        )
        return response.status


RelayMaker = Callable[..., Any]


@pytest.fixture
async def make_relay(
    tmp_path: Path, aiohttp_client: Any
) -> AsyncIterator[Callable[..., Any]]:
    relays: list[Relay] = []

    async def make(
        destinations: str,
        routes: str = "- to: [dest]\n",
        storage: str | None = None,
        delivery: str = "timeout: 2s",
    ) -> Harness:
        """A relay on SQLite in tmp_path, or on `storage` (a PostgreSQL URL)."""
        text = (
            f'oneroute: {{secrets: ["{SECRET}"]}}\n'
            f"storage: {storage or f'sqlite:///{tmp_path}/relay.db'}\n"
            f"delivery: {{{delivery}}}\n"
            "destinations:\n" + textwrap.indent(textwrap.dedent(destinations), "  ")
            + "routes:\n" + textwrap.indent(textwrap.dedent(routes), "  ")
        )
        config = parse_config(text, environ={})
        store = None if storage else SQLiteStore(tmp_path / "relay.db")
        relay = Relay(config, tmp_path / "relay.yaml", store)
        await relay.start()
        relays.append(relay)
        return Harness(relay, await aiohttp_client(relay.app()))

    yield make
    for relay in relays:
        await relay.stop()


def slack_destination(slack: FakeSlack, extra: str = "max_per_second: 100") -> str:
    return f"""
    dest:
      type: slack
      token: {fake_slack_module.BOT_TOKEN}
      channel: {fake_slack_module.CHANNEL}
      api_url: {slack.api_url}
      {extra}
    """


def telegram_destination(telegram: FakeTelegram, extra: str = "max_per_second: 100") -> str:
    return f"""
    dest:
      type: telegram
      token: "{fake_telegram_module.TOKEN}"
      chat_id: {fake_telegram_module.CHAT_ID}
      api_url: {telegram.api_url}
      {extra}
    """


async def test_outage_of_several_seconds_loses_nothing_and_keeps_order(
    make_relay: Any, fake_slack: FakeSlack
) -> None:
    harness = await make_relay(slack_destination(fake_slack))
    fake_slack.faults.fail_next(10_000, status=503)
    conversations = ["a", "b", "c"]
    for n in range(4):
        for conversation in conversations:
            assert await harness.post(event(conversation, n)) == 200
    await asyncio.sleep(2.5)  # the outage lasts at least this long: every call answers 503
    # ... and the lane has met it several times (waited for: a loaded machine retries later).
    await until(lambda: fake_slack.count(503) >= 3, within=20)
    assert fake_slack.messages == []
    fake_slack.faults.clear()
    texts = lambda: [post.text for post in fake_slack.messages]  # noqa: E731
    await until(lambda: sum(len(numbers(texts(), c)) for c in conversations) == 12)
    for conversation in conversations:
        assert numbers(texts(), conversation) == [0, 1, 2, 3]


async def test_429_storm_with_retry_after_is_honoured(
    make_relay: Any, fake_telegram: FakeTelegram
) -> None:
    harness = await make_relay(telegram_destination(fake_telegram))
    fake_telegram.faults.rate_limit_next(3, retry_after=0.4)
    started = time.monotonic()
    for n in range(5):
        assert await harness.post(event("x", n)) == 200
    texts = lambda: [p.text for p in fake_telegram.messages]  # noqa: E731
    await until(lambda: len(numbers(texts(), "x")) == 5)  # in one message or several
    assert numbers(texts(), "x") == [0, 1, 2, 3, 4]
    # Three 429s in a row, each with retry_after 0.4 s: the lane waited each time.
    assert time.monotonic() - started >= 1.2
    assert fake_telegram.count(429) == 3


async def test_permanent_errors_are_dead_lettered_after_one_attempt(
    make_relay: Any, fake_slack: FakeSlack
) -> None:
    destinations = f"""
    dest:
      type: slack
      token: {fake_slack_module.BOT_TOKEN}
      channel: C0NOSUCHCHAN
      api_url: {fake_slack.api_url}
    revoked:
      type: slack
      token: xoxb-revoked-0000000000
      channel: {fake_slack_module.CHANNEL}
      api_url: {fake_slack.api_url}
    """
    harness = await make_relay(destinations, "- to: [dest, revoked]\n")
    assert await harness.post(event("p", 1)) == 200
    store = harness.relay.store
    await until(lambda: len(fake_slack.calls) >= 2)
    await until_async(lambda: dead_count_is(store, 2))
    letters = {d.destination: d for d in await store.dead_letters()}
    assert letters["dest"].reason == "channel_not_found" and letters["dest"].attempts == 1
    assert letters["revoked"].reason == "unauthorized" and letters["revoked"].attempts == 1
    assert len(fake_slack.calls) == 2  # no retries
    assert "xoxb-revoked-0000000000" not in letters["revoked"].detail


async def test_slack_threads_by_conversation(make_relay: Any, fake_slack: FakeSlack) -> None:
    options = "max_per_second: 100\n      thread_by_conversation: true\n      coalesce: false"
    harness = await make_relay(slack_destination(fake_slack, options))
    # Two messages of a new conversation arriving together make one parent, not two.
    statuses = await asyncio.gather(harness.post(event("t", 0)), harness.post(event("t", 1)))
    assert statuses == [200, 200]
    assert await harness.post(event("t", 2)) == 200
    assert await harness.post(event("u", 0)) == 200
    await until(lambda: len(fake_slack.messages) == 4)
    by_text = {numbers([p.text], "t")[0] if "t-msg" in p.text else "u": p
               for p in fake_slack.messages}
    parent = by_text[0]
    assert parent.thread_ts is None
    assert by_text[1].thread_ts == parent.ts and by_text[1].thread_found
    assert by_text[2].thread_ts == parent.ts
    assert by_text["u"].thread_ts is None


async def test_telegram_replies_by_conversation_and_topic(
    make_relay: Any, fake_telegram: FakeTelegram
) -> None:
    chat = -1002000000002
    fake_telegram.add_chat(chat, forum=True, topics=(7,))
    harness = await make_relay(f"""
    dest:
      type: telegram
      token: "{fake_telegram_module.TOKEN}"
      chat_id: {chat}
      topic_id: 7
      thread_by_conversation: true
      max_per_second: 100
      coalesce: false
      api_url: {fake_telegram.api_url}
    """)
    for n in range(3):
        assert await harness.post(event("r", n)) == 200
    await until(lambda: len(fake_telegram.messages_in(chat)) == 3)
    first, second, third = fake_telegram.messages_in(chat)
    assert first.reply_to is None and first.thread_id == 7
    assert second.reply_to == first.message_id and third.reply_to == first.message_id


async def test_media_refused_by_telegram_falls_back_to_a_link(
    make_relay: Any, fake_telegram: FakeTelegram
) -> None:
    url = "https://files.example.com/broken.jpg"
    fake_telegram.refuse_media(url)
    harness = await make_relay(telegram_destination(fake_telegram))
    assert await harness.post(event("m", 0, imageUrl=url, contentType="IMAGE")) == 200
    await until(lambda: len(fake_telegram.messages) >= 1)
    await asyncio.sleep(0.2)
    assert all(post.method == "sendMessage" for post in fake_telegram.messages)
    assert any(url in post.raw for post in fake_telegram.messages)
    assert await harness.relay.store.dead_count() == 0


async def test_slack_image_it_cannot_download_costs_only_the_image(
    make_relay: Any, fake_slack: FakeSlack
) -> None:
    url = "https://files.example.com/broken.png"
    fake_slack.break_image(url)
    harness = await make_relay(slack_destination(fake_slack))
    assert await harness.post(event("i", 0, imageUrl=url, contentType="IMAGE")) == 200
    await until(lambda: len(fake_slack.messages) == 1)
    (post,) = fake_slack.messages
    assert all(block.get("type") != "image" for block in post.blocks or [])
    assert url in json.dumps(post.blocks)


async def test_pacing_keeps_to_one_message_per_second_per_channel(
    make_relay: Any, fake_slack: FakeSlack
) -> None:
    fake_slack.enforce_rate_limit(messages=1, per=1.0)
    harness = await make_relay(slack_destination(fake_slack, extra="coalesce: false"))
    for n in range(4):
        assert await harness.post(event("s", n)) == 200
    await until(lambda: len(fake_slack.messages) == 4, within=15)
    gaps = [b.at - a.at for a, b in zip(fake_slack.messages, fake_slack.messages[1:],
                                         strict=False)]
    assert all(gap >= 0.95 for gap in gaps), gaps
    assert fake_slack.count(429) == 0


async def test_console_destination_prints_what_would_be_sent(
    make_relay: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    harness = await make_relay("""
    dest: {type: console}
    """)
    assert await harness.post(event("k", 0)) == 200
    printed = ""

    def printed_it() -> bool:
        nonlocal printed
        printed += capsys.readouterr().out
        return "k-msg-0" in printed

    await until(printed_it)  # fails the test if the console destination printed nothing


# --- nothing stops a lane ----------------------------------------------------------------------


@pytest.mark.parametrize("platform", ["slack", "telegram"])
async def test_an_odd_answer_is_retried_and_the_lane_goes_on(
    make_relay: Any, fake_slack: FakeSlack, fake_telegram: FakeTelegram, platform: str
) -> None:
    if platform == "slack":
        fake: FakeSlack | FakeTelegram = fake_slack
        harness = await make_relay(slack_destination(fake_slack))
        odd = (200, b"<html>Log in to the hotel Wi-Fi</html>", "text/html")
    else:
        fake = fake_telegram
        harness = await make_relay(telegram_destination(fake_telegram))
        odd = (200, b'{"ok": false}', "application/json")
    status, body, content_type = odd
    fake.faults.answer_next(2, status=status, body=body, content_type=content_type)
    assert await harness.post(event("o", 0)) == 200
    assert await harness.post(event("p", 0)) == 200
    texts = lambda: [m.text for m in fake.messages]  # noqa: E731
    await until(lambda: numbers(texts(), "o") and numbers(texts(), "p"), within=15)
    assert (numbers(texts(), "o"), numbers(texts(), "p")) == ([0], [0])
    store = harness.relay.store
    # The fake has the messages a moment before the lane records them sent.
    await until_async(lambda: nothing_pending(store))
    assert await store.dead_count() == 0
    assert harness.relay.lanes["dest"].running
    retried = {"destination": "dest", "outcome": "retried", "reason": "bad_answer"}
    assert harness.relay.metrics.sample("relay_deliveries_total", **retried) >= 2  # per event


async def test_a_bug_while_delivering_one_message_is_logged_counted_and_retried(
    make_relay: Any, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from relay.integrations.console.send import ConsoleSender

    real_send = ConsoleSender.send
    calls = 0

    async def buggy_send(self: ConsoleSender, message: str, thread: str | None = None) -> Any:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("a bug in the relay")
        return await real_send(self, message, thread)

    monkeypatch.setattr(ConsoleSender, "send", buggy_send)
    # One event a message: coalesced, both would share the failed send (a count of 2).
    harness = await make_relay("""
    dest: {type: console, coalesce: false}
    """)
    assert await harness.post(event("b", 0)) == 200
    assert await harness.post(event("c", 0)) == 200
    printed = ""

    def delivered() -> bool:
        nonlocal printed
        printed += capsys.readouterr().out
        return "b-msg-0" in printed and "c-msg-0" in printed

    await until(delivered, within=15)
    internal = {"destination": "dest", "outcome": "retried", "reason": "internal_error"}
    assert harness.relay.metrics.sample("relay_deliveries_total", **internal) == 1
    logged = [r for r in caplog.records if "internal error while delivering" in r.getMessage()]
    assert len(logged) == 1 and logged[0].exc_info is not None  # once, with its traceback
    assert harness.relay.lanes["dest"].running
    assert await harness.relay.store.dead_count() == 0


class SupervisorLooks:
    """relay.service's `asyncio`, except that the supervisor's wait between two looks at
    the lanes ends when the test says (`look()`), not after SUPERVISE_EVERY seconds."""

    def __init__(self) -> None:
        self._looks = asyncio.Semaphore(0)

    def __getattr__(self, name: str) -> Any:
        return getattr(asyncio, name)

    async def sleep(self, delay: float, result: Any = None) -> Any:
        if delay == relay_service.SUPERVISE_EVERY:
            await self._looks.acquire()
            return result
        return await asyncio.sleep(delay, result)

    def look(self) -> None:
        self._looks.release()


async def test_a_lane_whose_task_ends_is_restarted(
    make_relay: Any, fake_slack: FakeSlack, caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The supervisor looks when the test lets it: on its own it looks every second, and may
    # restart the lane before /readyz is asked, however quickly the test asks.
    supervisor = SupervisorLooks()
    monkeypatch.setattr(relay_service, "asyncio", supervisor)
    harness = await make_relay(slack_destination(fake_slack))
    lane = harness.relay.lanes["dest"]
    assert lane.task is not None
    lane.task.cancel()  # as if the task ended by some path nobody foresaw
    await until(lambda: not lane.running)
    assert (await harness.client.get("/readyz")).status == 503
    supervisor.look()
    await until(lambda: lane.running)  # the supervisor started it again
    assert any("restarting it" in r.getMessage() for r in caplog.records)
    assert await harness.post(event("r", 0)) == 200
    await until(lambda: len(fake_slack.messages) == 1)
    assert harness.relay.metrics.sample("relay_lane_restarts_total", destination="dest") == 1


async def test_a_failing_lane_loop_starts_again(
    make_relay: Any, fake_slack: FakeSlack, caplog: pytest.LogCaptureFixture
) -> None:
    harness = await make_relay(slack_destination(fake_slack))
    store = harness.relay.store
    real_claim = store.claim
    failures = 0

    async def claim_once_broken(*args: Any, **options: Any) -> Any:
        nonlocal failures
        if failures == 0:
            failures += 1
            raise RuntimeError("unexpected")
        return await real_claim(*args, **options)

    store.claim = claim_once_broken  # type: ignore[method-assign]
    assert await harness.post(event("l", 0)) == 200
    await until(lambda: len(fake_slack.messages) == 1, within=10)
    assert failures == 1
    assert any("the lane's loop failed" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("platform", ["slack", "telegram"])
async def test_a_huge_retry_after_pauses_the_lane_for_at_most_ten_minutes(
    make_relay: Any, fake_slack: FakeSlack, fake_telegram: FakeTelegram, platform: str
) -> None:
    if platform == "slack":
        fake: FakeSlack | FakeTelegram = fake_slack
        harness = await make_relay(slack_destination(fake_slack))
    else:
        fake = fake_telegram
        harness = await make_relay(telegram_destination(fake_telegram))
    fake.faults.rate_limit_next(1, retry_after=1_000_000)
    started = time.time()
    assert await harness.post(event("h", 0)) == 200
    await until(lambda: fake.count(429) == 1)
    store = harness.relay.store
    await until(lambda: harness.relay.lanes["dest"].paused() is not None)
    assert await store.dead_count() == 0  # not "still failing after 1 attempts over 24 h"
    due = await store.next_due("dest", "someone else")
    assert due is not None and due <= started + 600 + 5
    ready = await harness.client.get("/readyz")
    body = await ready.json()
    assert ready.status == 200, body  # a paused lane still takes events
    assert 590 <= body["paused"]["dest"]["seconds"] <= 600
    metrics = await (await harness.client.get("/metrics")).text()
    (line,) = [m for m in metrics.splitlines()
               if m.startswith('relay_lane_paused_seconds{destination="dest"}')]
    assert 590 <= float(line.split()[-1]) <= 600


@pytest.mark.parametrize("platform", ["slack", "telegram"])
@pytest.mark.parametrize("content", ["\n" * 5000 + "last", "\n" * 5000, " \n\t" * 3000])
async def test_blank_lines_never_make_an_empty_message(
    make_relay: Any, fake_slack: FakeSlack, fake_telegram: FakeTelegram, platform: str,
    content: str,
) -> None:
    fake: FakeSlack | FakeTelegram = fake_slack if platform == "slack" else fake_telegram
    destination = (slack_destination if platform == "slack" else telegram_destination)(fake)
    harness = await make_relay(destination)
    body = json.dumps({"event": "newMessage", "conversation": {"id": "n"},
                       "message": {"sender": {"name": "Ada"}, "content": content}}).encode()
    assert await harness.post(body) == 200
    await until(lambda: harness.relay.metrics.sample(
        "relay_deliveries_total", destination="dest", outcome="sent", reason="") == 1)
    (message,) = fake.messages  # one message, and it has something to read under the header
    lines = [line.strip("_") for line in message.text.splitlines()[1:] if line.strip()]
    assert lines == (["last"] if "last" in content else ["(no text)"]), message.text


# --- keeping up with a busy line: coalescing ---------------------------------------------------


def marks(texts: list[str], conversations: str) -> dict[str, list[int]]:
    return {c: numbers(texts, c) for c in conversations}


@pytest.mark.parametrize("engine", ["sqlite", "postgresql"])
async def test_a_burst_to_a_telegram_group_goes_out_in_a_few_messages_within_its_limit(
    make_relay: Any, fake_telegram: FakeTelegram, engine: str, request: pytest.FixtureRequest
) -> None:
    fake_telegram.enforce_rate_limits()  # 20 a minute in a group: one message every 3 s
    storage = request.getfixturevalue("pg_url") if engine == "postgresql" else None
    harness = await make_relay(telegram_destination(fake_telegram, extra=""), storage=storage)
    posts = [harness.post(event(c, n)) for n in range(10) for c in "abcd"]
    assert await asyncio.gather(*posts) == [200] * 40
    texts = lambda: [m.text for m in fake_telegram.messages]  # noqa: E731
    await until(lambda: sum(map(len, marks(texts(), "abcd").values())) >= 40, within=20)
    assert marks(texts(), "abcd") == {c: list(range(10)) for c in "abcd"}  # once, in order
    assert fake_telegram.count(429) == 0
    # Forty events: the first alone, the others in as many messages as the posting took
    # pacer slots (one every 3 s); far fewer than forty.
    assert len(fake_telegram.messages) <= 8
    sent = {"destination": "dest", "outcome": "sent", "reason": ""}
    # Recorded just after the fake has them: wait for the lane to write it down.
    await until(lambda: harness.relay.metrics.sample("relay_deliveries_total", **sent) == 40)


@pytest.mark.parametrize("engine", ["sqlite", "postgresql"])
async def test_a_burst_to_a_slack_channel_fills_messages_up_to_fifty_blocks(
    make_relay: Any, fake_slack: FakeSlack, engine: str, request: pytest.FixtureRequest
) -> None:
    fake_slack.enforce_rate_limit(messages=1, per=1.0)
    storage = request.getfixturevalue("pg_url") if engine == "postgresql" else None
    harness = await make_relay(slack_destination(fake_slack, extra=""), storage=storage)
    posts = [harness.post(event(c, n)) for n in range(12) for c in "abcde"]
    assert await asyncio.gather(*posts) == [200] * 60
    texts = lambda: [m.text or "" for m in fake_slack.messages]  # noqa: E731
    await until(lambda: sum(map(len, marks(texts(), "abcde").values())) >= 60, within=20)
    assert marks(texts(), "abcde") == {c: list(range(12)) for c in "abcde"}
    assert fake_slack.count(429) == 0  # the fake also checked every message's Block Kit
    assert len(fake_slack.messages) <= 12  # sixty events, at most 25 a message
    assert all(len(m.blocks or []) <= 50 for m in fake_slack.messages)
    assert any((m.text or "").startswith("25 messages\n") for m in fake_slack.messages)


@pytest.mark.parametrize("engine", ["sqlite", "postgresql"])
async def test_with_threads_a_message_holds_one_conversation_in_its_thread(
    make_relay: Any, fake_slack: FakeSlack, engine: str, request: pytest.FixtureRequest
) -> None:
    fake_slack.enforce_rate_limit(messages=1, per=1.0)
    storage = request.getfixturevalue("pg_url") if engine == "postgresql" else None
    harness = await make_relay(
        slack_destination(fake_slack, "thread_by_conversation: true"), storage=storage
    )
    assert await harness.post(event("p", 0)) == 200  # sent at once: the thread's parent
    await until(lambda: len(fake_slack.messages) == 1)
    posts = [harness.post(event(c, n)) for n in range(1, 5) for c in "pq"]
    assert await asyncio.gather(*posts) == [200] * 8
    texts = lambda: [m.text or "" for m in fake_slack.messages]  # noqa: E731
    await until(lambda: sum(map(len, marks(texts(), "pq").values())) >= 9, within=15)
    assert marks(texts(), "pq") == {"p": list(range(5)), "q": list(range(1, 5))}
    parent = fake_slack.messages[0]
    for message in fake_slack.messages[1:]:
        mine = marks([message.text or ""], "pq")
        assert not (mine["p"] and mine["q"]), message.text  # one conversation a message
        if mine["p"]:
            assert message.thread_ts == parent.ts
    assert len(fake_slack.messages) <= 4


@pytest.mark.parametrize("engine", ["sqlite", "postgresql"])
async def test_with_telegram_reply_chains_a_message_holds_one_conversation(
    make_relay: Any, fake_telegram: FakeTelegram, engine: str, request: pytest.FixtureRequest
) -> None:
    fake_telegram.enforce_rate_limits()
    storage = request.getfixturevalue("pg_url") if engine == "postgresql" else None
    harness = await make_relay(
        telegram_destination(fake_telegram, "thread_by_conversation: true"), storage=storage
    )
    assert await harness.post(event("p", 0)) == 200  # sent at once: what p's replies answer
    await until(lambda: len(fake_telegram.messages) == 1)
    gate = await gated(harness)  # all eight due at once: they could share one message
    posts = [harness.post(event(c, n)) for n in range(1, 5) for c in "pq"]
    assert await asyncio.gather(*posts) == [200] * 8
    gate.open()
    texts = lambda: [m.text or "" for m in fake_telegram.messages]  # noqa: E731
    await until(lambda: sum(map(len, marks(texts(), "pq").values())) >= 9, within=15)
    assert marks(texts(), "pq") == {"p": list(range(5)), "q": list(range(1, 5))}
    parent, *rest = fake_telegram.messages
    assert parent.reply_to is None
    for message in rest:
        mine = marks([message.text or ""], "pq")
        assert not (mine["p"] and mine["q"]), message.text  # one conversation a message
        # p's go in its reply chain; q's first message starts one of its own.
        assert message.reply_to == (parent.message_id if mine["p"] else None)
    assert len(fake_telegram.messages) == 3  # p's four in one reply, q's four in one message
    assert fake_telegram.count(429) == 0


async def test_coalesce_false_sends_each_event_on_its_own(
    make_relay: Any, fake_slack: FakeSlack
) -> None:
    harness = await make_relay(slack_destination(fake_slack, "coalesce: false"))
    assert await asyncio.gather(*(harness.post(event("s", n)) for n in range(5))) == [200] * 5
    await until(lambda: len(fake_slack.messages) == 5)
    assert [numbers([m.text or ""], "s") for m in fake_slack.messages] == [[n] for n in range(5)]


class ClaimGate:
    """Holds the lane's claims until the test opens it, so that every event posted meanwhile
    is due at the lane's next claim, however fast or slow the machine is."""

    def __init__(self, relay: Relay) -> None:
        self.waiting = 0  # claims held so far
        self._open = asyncio.Event()
        self._claim = relay.store.claim
        relay.store.claim = self.claim  # type: ignore[method-assign]

    async def claim(self, *args: Any, **options: Any) -> Any:
        self.waiting += 1
        await self._open.wait()
        return await self._claim(*args, **options)

    def open(self) -> None:
        self._open.set()


async def gated(harness: Harness) -> ClaimGate:
    """A gate on the lane's claims, with the lane waiting at it: nothing is claimed before
    the test opens it."""
    gate = ClaimGate(harness.relay)
    harness.relay.lanes["dest"].wake()
    await until(lambda: gate.waiting)
    return gate


async def test_a_console_destination_coalesces_by_default(
    make_relay: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    harness = await make_relay("""
    dest: {type: console}
    """)
    gate = await gated(harness)
    for body in [event("k", 0), event("j", 0), event("k", 1), event("k", 2)]:
        assert await harness.post(body) == 200
    gate.open()
    metrics = harness.relay.metrics
    sent = {"destination": "dest", "outcome": "sent", "reason": ""}
    await until(lambda: metrics.sample("relay_deliveries_total", **sent) == 4)
    printed = capsys.readouterr().out
    assert printed.count("── dest ──") == 1  # one message carried the four events
    assert metrics.sample("relay_messages_sent_total", destination="dest") == 1
    slack, telegram = printed.split("├ Telegram")
    assert "┌ Slack · 1 message\n" in slack and telegram.startswith(" · 1 call\n")
    for shown in (slack, telegram):  # in order, each its own
        assert numbers([shown], "k") == [0, 1, 2] and numbers([shown], "j") == [0]
        assert shown.index("k-msg-0") < shown.index("j-msg-0") < shown.index("k-msg-1")


async def test_coalesce_false_on_telegram_sends_each_event_on_its_own(
    make_relay: Any, fake_telegram: FakeTelegram
) -> None:
    options = "max_per_second: 100\n      coalesce: false"
    harness = await make_relay(telegram_destination(fake_telegram, options))
    gate = await gated(harness)
    for n in range(5):
        assert await harness.post(event("s", n)) == 200
    gate.open()  # all five due at once: still one message each
    sent = {"destination": "dest", "outcome": "sent", "reason": ""}
    await until(lambda: harness.relay.metrics.sample("relay_deliveries_total", **sent) == 5)
    texts = [m.text or "" for m in fake_telegram.messages]
    assert [numbers([text], "s") for text in texts] == [[n] for n in range(5)]


@pytest.mark.parametrize("engine", ["sqlite", "postgresql"])
async def test_a_failed_coalesced_message_fails_for_all_its_events_together(
    make_relay: Any, fake_slack: FakeSlack, engine: str, request: pytest.FixtureRequest
) -> None:
    fake_slack.enforce_rate_limit(messages=1, per=1.0)
    storage = request.getfixturevalue("pg_url") if engine == "postgresql" else None
    harness = await make_relay(slack_destination(fake_slack, extra=""), storage=storage)
    assert await harness.post(event("f", 0)) == 200  # alone, at once
    await until(lambda: len(fake_slack.messages) == 1)
    refused = json.dumps({"ok": False, "error": "channel_not_found"}).encode()
    fake_slack.faults.answer_next(status=200, body=refused, content_type="application/json")
    assert await asyncio.gather(*(harness.post(event(c, n)) for n in (1, 2) for c in "fg")) \
        == [200] * 4
    store = harness.relay.store
    await until_async(lambda: dead_count_is(store, 4))
    letters = await store.dead_letters()
    assert len(letters) == 4 and {d.reason for d in letters} == {"channel_not_found"}
    assert len({d.died_at for d in letters}) == 1  # one message, one outcome for all four
    assert await store.revive(None, time.time()) == 4  # relay dead retry --all
    harness.relay.lanes["dest"].wake()
    texts = lambda: [m.text or "" for m in fake_slack.messages]  # noqa: E731
    await until(lambda: sum(map(len, marks(texts(), "fg").values())) >= 5)
    assert marks(texts(), "fg") == {"f": [0, 1, 2], "g": [1, 2]}


@pytest.mark.parametrize("engine", ["sqlite", "postgresql"])
async def test_a_retried_coalesced_message_retries_all_its_events_together(
    make_relay: Any, fake_telegram: FakeTelegram, engine: str, request: pytest.FixtureRequest
) -> None:
    storage = request.getfixturevalue("pg_url") if engine == "postgresql" else None
    harness = await make_relay(
        telegram_destination(fake_telegram, "max_per_second: 1"), storage=storage
    )
    assert await harness.post(event("r", 0)) == 200
    await until(lambda: len(fake_telegram.messages) == 1)
    fake_telegram.faults.fail_next(1, status=502)
    gate = await gated(harness)  # the three are due together, however slow the posting
    assert await asyncio.gather(*(harness.post(event("r", n)) for n in range(1, 4))) == [200] * 3
    gate.open()
    texts = lambda: [m.text or "" for m in fake_telegram.messages]  # noqa: E731
    await until(lambda: len(numbers(texts(), "r")) >= 4, within=15)
    assert numbers(texts(), "r") == [0, 1, 2, 3]
    retried = {"destination": "dest", "outcome": "retried", "reason": "server_error"}
    assert harness.relay.metrics.sample("relay_deliveries_total", **retried) == 3
    assert len(fake_telegram.messages) == 2  # the three came back together


@pytest.mark.parametrize("engine", ["sqlite", "postgresql"])
async def test_telegram_media_goes_alone_in_its_place(
    make_relay: Any, fake_telegram: FakeTelegram, engine: str, request: pytest.FixtureRequest
) -> None:
    storage = request.getfixturevalue("pg_url") if engine == "postgresql" else None
    harness = await make_relay(
        telegram_destination(fake_telegram, "max_per_second: 1"), storage=storage
    )
    assert await harness.post(event("m", 0)) == 200
    await until(lambda: len(fake_telegram.messages) == 1)
    photo = {"imageUrl": "https://cdn.example.com/p.jpg", "contentType": "IMAGE"}
    bodies = [event("m", 1), event("m", 2, **photo), event("m", 3), event("n", 1)]
    gate = await gated(harness)  # all four due at once, however slow the posting
    for body in bodies:  # in this order: the photo is the second of m's three
        assert await harness.post(body) == 200
    gate.open()
    await until(lambda: len(numbers([m.text or "" for m in fake_telegram.messages], "m")) >= 4,
                within=15)
    methods = [m.method.lower() for m in fake_telegram.messages]
    assert "sendphoto" in methods
    texts = [m.text or "" for m in fake_telegram.messages]
    assert numbers(texts, "m") == [0, 1, 2, 3] and numbers(texts, "n") == [1]
    (photo_post,) = [m for m in fake_telegram.messages if m.method.lower() == "sendphoto"]
    assert numbers([photo_post.text or ""], "m") == [2] and not numbers([photo_post.text], "n")


async def test_a_lane_taken_over_mid_message_leaves_the_rest_to_the_new_holder(
    make_relay: Any, fake_telegram: FakeTelegram, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A long message's parts are paced; when another instance takes the lane between two
    parts (this one could not renew it), this one stops, and the rest is sent once, by
    whoever holds the lane, from the part it had reached."""
    harness = await make_relay(
        telegram_destination(fake_telegram), delivery="timeout: 2s, lane_lease: 3ms"
    )
    lost = True

    async def hold_lane(destination: str, owner: str, ttl: float, now: float) -> bool:
        return not (fake_telegram.messages and lost)  # lost once the first part is out

    monkeypatch.setattr(harness.relay.store, "hold_lane", hold_lane)
    assert await harness.post(event("b", 0, content="word " * 1200)) == 200  # two parts
    await until(lambda: fake_telegram.messages)
    await asyncio.sleep(0.5)
    assert len(fake_telegram.messages) == 1  # not the second part while another holds it
    lost = False  # the lane comes back: the rest goes out, once
    await until(lambda: len(fake_telegram.messages) == 2)
    await asyncio.sleep(0.3)
    first, second = fake_telegram.messages
    assert len(fake_telegram.messages) == 2 and first.text != second.text
    assert "word" in second.text
