"""Answers end to end, through the real relay service (relay/service.py) and the real SDK
clients, against the fakes of Slack, Telegram and OneRoute, on both engines: a person
answers in the conversation's thread or reply chain, and the customer gets it."""

from __future__ import annotations

import asyncio
import json
import textwrap
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from relay.config.load import load_config
from relay.ingest.signature import sign
from relay.service import Relay
from tests.fakes import oneroute as fake_oneroute_module
from tests.fakes import slack as fake_slack_module
from tests.fakes import telegram as fake_telegram_module
from tests.fakes.oneroute import FakeOneRoute
from tests.fakes.slack import FakeSlack
from tests.fakes.telegram import FakeTelegram
from tests.waiting import until

pytestmark = pytest.mark.filterwarnings("ignore::telegram.warnings.PTBDeprecationWarning")

SECRET = "answers-e2e-secret"
BUSINESS = fake_oneroute_module.BUSINESS
CUSTOMER = "+2348011112222"
CONVERSATION = "conv-answers-1"
TEAMMATE = fake_slack_module.HUMAN
TG_TEAMMATE = fake_telegram_module.HUMAN_ID


def customer_event(text: str = "Where is my order?", conversation: str = CONVERSATION,
                   customer: str | None = CUSTOMER) -> bytes:
    person: dict[str, Any] = {"name": "Ada"}
    if customer is not None:
        person["phone"] = customer
    return json.dumps({
        "event": "newMessage",
        "message": {"sender": {"name": "Ada", "authUser": False}, "content": text,
                    "contentType": "TEXT", "conversation_id": conversation},
        "conversation": {"id": conversation, "status": "open", "customer": person,
                         "Channel": {"id": "ch-1", "name": "Lagos line", "medium": "WHATSAPP",
                                     "phone": BUSINESS}},
    }).encode()


class Running:
    """A relay serving its app on a real port, and what the tests do with it."""

    def __init__(self, relay: Relay, client: TestClient) -> None:
        self.relay = relay
        self.client = client

    @property
    def url(self) -> str:
        return str(self.client.make_url("/webhooks/oneroute"))

    async def post(self, body: bytes) -> dict[str, Any]:
        response = await self.client.post(
            "/webhooks/oneroute", data=body, headers={"x-oneroute-signature": sign(SECRET, body)})
        assert response.status == 200
        answer: dict[str, Any] = await response.json()
        return answer

    async def slack_events(self, headers: dict[str, str], body: bytes) -> int:
        # From an address OneRoute's allowlist refuses: Slack posts from many.
        headers = {**headers, "X-Forwarded-For": "198.51.100.9"}
        response = await self.client.post("/slack/events", data=body, headers=headers)
        return response.status

    async def answers(self) -> list[Any]:
        rows = await self.relay.store._read(  # type: ignore[attr-defined]
            _ANSWERS)
        return list(rows)


def _answers_statement() -> Any:
    from relay.store.sql import Statement
    return Statement("SELECT id FROM events WHERE event_name = 'answer'", rows=True)


_ANSWERS = _answers_statement()


def write_config(tmp_path: Path, storage: str, slack: FakeSlack, telegram: FakeTelegram,
                 oneroute: FakeOneRoute, *, api_key: str | None = fake_oneroute_module.API_KEY,
                 telegram_extra: str = "thread_by_conversation: true",
                 give_up_after: str = "1h") -> Path:
    path = tmp_path / "relay.yaml"
    key = f"api_key: {api_key}" if api_key else ""
    path.write_text(textwrap.dedent(f"""
        oneroute:
          secrets: ["{SECRET}"]
          allowed_ips: ["127.0.0.1"]
          trusted_proxies: ["127.0.0.1/32"]
          {key}
          api_url: {oneroute.api_url}
        storage: {storage}
        delivery: {{give_up_after: {give_up_after}}}
        destinations:
          support:
            type: slack
            token: {fake_slack_module.BOT_TOKEN}
            channel: {fake_slack_module.CHANNEL}
            api_url: {slack.api_url}
            thread_by_conversation: true
            max_per_second: 100
            replies:
              app_token: {fake_slack_module.APP_TOKEN}
              signing_secret: {fake_slack_module.SIGNING_SECRET}
              from_users: [{TEAMMATE}]
          ops:
            type: telegram
            token: "{fake_telegram_module.TOKEN}"
            chat_id: {fake_telegram_module.CHAT_ID}
            api_url: {telegram.api_url}
            max_per_second: 100
            {telegram_extra}
            replies: {{from_users: [{TG_TEAMMATE}]}}
        routes:
          - to: [support, ops]
    """))
    return path


Start = Callable[..., Awaitable[Running]]


@pytest.fixture
async def start(
    tmp_path: Path, storage: str, fake_slack: FakeSlack, fake_telegram: FakeTelegram,
    fake_oneroute: FakeOneRoute,
) -> AsyncIterator[Start]:
    fake_slack.scopes |= {"reactions:write", "channels:history"}
    started: list[tuple[Relay, TestClient]] = []

    async def run(**options: Any) -> Running:
        path = write_config(tmp_path, storage, fake_slack, fake_telegram, fake_oneroute, **options)
        relay = Relay(load_config(path, environ={}), path)
        await relay.start()
        client = TestClient(TestServer(relay.app()))
        await client.start_server()
        started.append((relay, client))
        return Running(relay, client)

    yield run
    for relay, client in started:
        await client.close()
        await relay.stop()


async def dead_letters(running: Running, count: int) -> list[Any]:
    """The dead letters, once there are `count` (the lane records them after feedback)."""
    for _ in range(1000):
        letters = await running.relay.store.dead_letters()
        if len(letters) >= count:
            return letters
        await asyncio.sleep(0.02)
    raise AssertionError(f"expected {count} dead letters")


def relay_posts(slack: FakeSlack) -> list[Any]:
    return [m for m in slack.messages if m.via == "api"]


async def conversation_in_slack(running: Running, slack: FakeSlack, telegram: FakeTelegram,
                                body: bytes | None = None) -> str:
    """The customer writes; the relay posts to Slack and Telegram; the thread's parent ts."""
    before = len(relay_posts(slack))
    await running.post(body or customer_event())
    await until(lambda: len(relay_posts(slack)) > before and telegram.messages)
    # A person answers seconds later, by when the relay has recorded its message; a test
    # answers at once, so it waits for that record first.
    for post in relay_posts(slack)[before:]:
        await recorded(running, "support", post.ts)
    return str(relay_posts(slack)[0].ts)


async def recorded(running: Running, destination: str, ref: str | int) -> None:
    store: Any = running.relay.store
    for _ in range(1000):
        if await store.conversation_of(destination, str(ref)) is not None:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"{destination} message {ref} not recorded")


async def answer_in_thread(slack: FakeSlack, parent: str, text: str, **extra: Any) -> str:
    ts = slack.human_message(text=text, thread_ts=parent, user=extra.pop("user", TEAMMATE))
    slack.push_event(slack.message_event(ts, **extra))
    return ts


async def sent_texts(oneroute: FakeOneRoute, count: int = 1) -> list[str]:
    """The texts sent to customers, once there are `count`."""
    await until(lambda: len(oneroute.sent) >= count)
    return [m.text for m in oneroute.sent]


CustomerThread = Callable[..., Awaitable[tuple[Running, str]]]


@pytest.fixture
def customer_thread(
    start: Start, fake_slack: FakeSlack, fake_telegram: FakeTelegram,
    fake_oneroute: FakeOneRoute,
) -> CustomerThread:
    """Start a relay (with `start`'s options) and post the customer's message: the relay and
    the Slack thread's parent ts. The customer wrote within OneRoute's 24-hour window, unless
    `in_window=False` (then OneRoute refuses answers)."""

    async def run(*, in_window: bool = True, **options: Any) -> tuple[Running, str]:
        running = await start(**options)
        if in_window:
            fake_oneroute.customer_wrote(CUSTOMER, CONVERSATION)
        return running, await conversation_in_slack(running, fake_slack, fake_telegram)

    return run


# --- Slack ---------------------------------------------------------------------------------------


async def test_a_thread_answer_reaches_the_customer_and_is_marked(
    customer_thread: CustomerThread, fake_slack: FakeSlack, fake_oneroute: FakeOneRoute,
) -> None:
    running, parent = await customer_thread()
    ts = await answer_in_thread(fake_slack, parent, "On its way & <soon>")
    await until(lambda: fake_oneroute.sent)
    (sent,) = fake_oneroute.sent
    assert (sent.business, sent.customer, sent.text) == (BUSINESS, CUSTOMER, "On its way & <soon>")
    await until(lambda: fake_slack.reactions)
    assert [(r.ts, r.name) for r in fake_slack.reactions] == [(ts, "white_check_mark")]
    assert running.relay.metrics.sample(
        "relay_replies_total", destination="support", outcome="sent", reason="") == 1


async def test_a_retried_event_is_sent_once(
    customer_thread: CustomerThread, fake_slack: FakeSlack, fake_oneroute: FakeOneRoute,
) -> None:
    running, parent = await customer_thread()
    ts = fake_slack.human_message(text="Sent once", thread_ts=parent)
    event = fake_slack.message_event(ts)
    fake_slack.push_event(event, event_id="Ev01")
    fake_slack.push_event(event, 1, event_id="Ev01")
    headers, body = fake_slack.events_request(
        fake_slack_module.SIGNING_SECRET, fake_slack.event_payload(event, "Ev01"), retry_num=2)
    assert await running.slack_events(headers, body) == 200
    await until(lambda: fake_oneroute.sent and len(fake_slack.acks) >= 2)
    await until(lambda: fake_slack.reactions)
    assert [m.text for m in fake_oneroute.sent] == ["Sent once"]
    assert len(await running.answers()) == 1


async def test_what_is_not_an_answer_is_not_sent(
    customer_thread: CustomerThread, fake_slack: FakeSlack, fake_oneroute: FakeOneRoute,
) -> None:
    running, parent = await customer_thread()
    bot_reply = fake_slack.human_message(text="a bot", thread_ts=parent)
    fake_slack.push_event(fake_slack.message_event(
        bot_reply, bot_id="B0OTHER", bot_profile={"id": "B0OTHER"}))
    await answer_in_thread(fake_slack, parent, "an edit", subtype="message_changed")
    await answer_in_thread(fake_slack, parent, "Note: check the warehouse first")
    await answer_in_thread(fake_slack, parent, "a stranger", user="U0STRANGER")
    elsewhere = fake_slack.human_message(text="not in a thread")
    fake_slack.push_event(fake_slack.message_event(elsewhere))
    own = fake_slack.human_message(text="no relay thread")
    await answer_in_thread(fake_slack, own, "in a person's thread")
    await answer_in_thread(fake_slack, parent, "The real answer")
    await until(lambda: fake_oneroute.sent)
    await until(lambda: len(fake_slack.acks) >= 7)
    assert [m.text for m in fake_oneroute.sent] == ["The real answer"]
    assert len(await running.answers()) == 1


async def test_a_refusal_is_explained_in_the_thread(
    customer_thread: CustomerThread, fake_slack: FakeSlack, fake_oneroute: FakeOneRoute,
) -> None:
    running, parent = await customer_thread(in_window=False)
    await answer_in_thread(fake_slack, parent, "Too late?")

    def explained() -> list[Any]:
        return [m for m in relay_posts(fake_slack) if m.thread_ts == parent
                and "Not sent to the customer" in (m.text or "")]

    await until(explained)
    assert "24 hours" in (explained()[0].text or "")
    assert fake_oneroute.sent == [] and fake_slack.reactions == []
    (letter,) = await dead_letters(running, 1)
    assert (letter.destination, letter.reason) == ("@answers:support", "bad_request")


async def test_no_number_and_no_key_are_explained(
    start: Start, customer_thread: CustomerThread, fake_slack: FakeSlack,
    fake_telegram: FakeTelegram, fake_oneroute: FakeOneRoute,
) -> None:
    running, parent = await customer_thread(in_window=False, api_key=None)
    await answer_in_thread(fake_slack, parent, "No key")
    await until(lambda: any("no OneRoute API key" in (m.text or "")
                            for m in relay_posts(fake_slack)))
    other = customer_event(conversation="conv-no-number", customer=None)
    await running.relay.stop()
    running = await start()
    await conversation_in_slack(running, fake_slack, fake_telegram, other)
    parent = [m.ts for m in relay_posts(fake_slack) if m.thread_ts is None][-1]
    await answer_in_thread(fake_slack, parent, "No number")
    await until(lambda: any("no customer" in (m.text or "") for m in relay_posts(fake_slack)))
    reasons = sorted(d.reason for d in await dead_letters(running, 2))
    assert reasons == ["no_api_key", "no_number"]
    assert fake_oneroute.sent == []


async def test_oneroute_down_then_sent_after_it_returns(
    customer_thread: CustomerThread, fake_slack: FakeSlack, fake_oneroute: FakeOneRoute,
) -> None:
    _, parent = await customer_thread()
    fake_oneroute.faults.fail_next(2, status=503)
    await answer_in_thread(fake_slack, parent, "Eventually")
    await until(lambda: fake_oneroute.sent, within=30)
    assert [m.text for m in fake_oneroute.sent] == ["Eventually"]
    assert fake_oneroute.count(503) == 2
    await until(lambda: fake_slack.reactions)


async def test_the_echo_is_not_posted_back(
    start: Start, fake_slack: FakeSlack, fake_telegram: FakeTelegram,
    fake_oneroute: FakeOneRoute,
) -> None:
    running = await start()
    fake_oneroute.echo_to(running.url, SECRET)
    fake_oneroute.customer_wrote(CUSTOMER, CONVERSATION)
    parent = await conversation_in_slack(running, fake_slack, fake_telegram)
    posted = len(relay_posts(fake_slack))
    await answer_in_thread(fake_slack, parent, "Echo me not")
    # Routed as usual: Telegram, which the answer did not come from, shows it.
    await until(lambda: any("Echo me not" in (m.text or "") for m in fake_telegram.messages))
    await until(lambda: fake_slack.reactions)
    await running.post(customer_event("Thanks!"))  # later messages still reach the thread
    await until(lambda: len(relay_posts(fake_slack)) > posted)
    assert [m.text for m in relay_posts(fake_slack)[posted:] if "Echo me not" in (m.text or "")
            ] == []


async def test_events_api_refuses_a_bad_signature_and_stores_nothing(
    customer_thread: CustomerThread, fake_slack: FakeSlack, fake_oneroute: FakeOneRoute,
) -> None:
    running, parent = await customer_thread()
    ts = fake_slack.human_message(text="forged", thread_ts=parent)
    payload = fake_slack.event_payload(fake_slack.message_event(ts))
    headers, body = fake_slack.events_request("not-the-signing-secret", payload)
    assert await running.slack_events(headers, body) == 401
    headers, body = fake_slack.events_request(fake_slack_module.SIGNING_SECRET, payload,
                                              timestamp=1_000_000)
    assert await running.slack_events(headers, body) == 401
    assert await running.answers() == []
    # The address allowlist is for OneRoute's webhooks, not for Slack's requests.
    headers, body = fake_slack.events_request(fake_slack_module.SIGNING_SECRET, payload)
    assert await running.slack_events(headers, body) == 200
    await until(lambda: fake_oneroute.sent)


# --- Telegram ------------------------------------------------------------------------------------


async def test_a_telegram_reply_reaches_the_customer(
    customer_thread: CustomerThread, fake_telegram: FakeTelegram, fake_oneroute: FakeOneRoute,
) -> None:
    running, _ = await customer_thread()
    await running.post(customer_event("And another thing"))
    await until(lambda: len(fake_telegram.messages) >= 2)
    second = fake_telegram.messages[1].message_id  # not the first: any message of the relay
    await recorded(running, "ops", second)
    update = fake_telegram.user_message(text="Telegram answer", reply_to=second)
    await until(lambda: fake_oneroute.sent)
    assert [(m.customer, m.text) for m in fake_oneroute.sent] == [(CUSTOMER, "Telegram answer")]
    message_id = update["message"]["message_id"]
    await until(lambda: fake_telegram.reactions_on(fake_telegram_module.CHAT_ID, message_id))
    fake_telegram.user_message(text="Note: internal", reply_to=second)
    fake_telegram.user_message(text="stranger", reply_to=second, user_id=99)
    fake_telegram.user_message(text="Second answer", reply_to=second)
    assert await sent_texts(fake_oneroute, 2) == ["Telegram answer", "Second answer"]


async def test_a_reply_to_the_relay_s_refusal_in_telegram_is_an_answer(
    customer_thread: CustomerThread, fake_telegram: FakeTelegram, fake_oneroute: FakeOneRoute,
) -> None:
    # The refusal is one of the relay's messages of the conversation: replying to it, to
    # try again, is answering (README: "a person's reply to any of the relay's messages").
    running, _ = await customer_thread(in_window=False)
    await until(lambda: len(fake_telegram.messages) >= 1)
    first = fake_telegram.messages[0].message_id
    await recorded(running, "ops", first)
    fake_telegram.user_message(text="Too late?", reply_to=first)

    def refusals() -> list[Any]:
        return [m for m in fake_telegram.messages if "Not sent to the customer" in m.text]

    await until(refusals)
    fake_oneroute.customer_wrote(CUSTOMER, CONVERSATION)  # the customer writes again
    fake_telegram.user_message(text="Now it works", reply_to=refusals()[0].message_id)
    assert await sent_texts(fake_oneroute) == ["Now it works"]


async def test_a_telegram_answer_with_a_lone_surrogate_does_not_block_the_bot(
    customer_thread: CustomerThread, fake_telegram: FakeTelegram, fake_oneroute: FakeOneRoute,
) -> None:
    # JSON may carry a lone surrogate ("\\ud83d" without its pair): Python reads it, UTF-8
    # cannot encode it. Storing must not fail for ever, holding back every later update.
    running, _ = await customer_thread()
    await until(lambda: len(fake_telegram.messages) >= 1)
    first = fake_telegram.messages[0].message_id
    await recorded(running, "ops", first)
    fake_telegram.user_message(text="Broken emoji \ud83d here", reply_to=first)
    fake_telegram.user_message(text="Next answer", reply_to=first)
    assert await sent_texts(fake_oneroute, 2) == ["Broken emoji \ufffd here", "Next answer"]


async def test_a_topic_per_conversation_and_a_message_in_it_is_an_answer(
    start: Start, customer_thread: CustomerThread, fake_telegram: FakeTelegram,
    fake_oneroute: FakeOneRoute,
) -> None:
    fake_telegram.add_chat(fake_telegram_module.CHAT_ID, forum=True)
    running, _ = await customer_thread(telegram_extra="topic_per_conversation: true")
    await running.post(customer_event("Second message"))
    await running.post(customer_event("Another customer", conversation="conv-other"))
    await until(lambda: len(fake_telegram.messages) >= 3)
    chat = fake_telegram.chats[fake_telegram_module.CHAT_ID]
    assert sorted(chat.topic_names.values()) == ["Ada · Lagos line", "Ada · Lagos line"]
    first, second, other = fake_telegram.messages[:3]
    assert first.thread_id is not None and first.thread_id == second.thread_id
    assert other.thread_id not in (None, first.thread_id)
    assert await running.relay.store.topic_of("ops", CONVERSATION) == first.thread_id
    fake_telegram.user_message(text="Answer in the topic", thread_id=first.thread_id)
    await until(lambda: fake_oneroute.sent)
    assert [(m.customer, m.text) for m in fake_oneroute.sent] == [(CUSTOMER, "Answer in the topic")]
    # A restarted relay posts the conversation in the same topic.
    await running.relay.stop()
    running = await start(telegram_extra="topic_per_conversation: true")
    await running.post(customer_event("After the restart"))
    await until(lambda: len(fake_telegram.messages) >= 4)
    assert fake_telegram.messages[3].thread_id == first.thread_id
    assert len(chat.topic_names) == 2


async def test_a_dead_answer_is_sent_after_relay_dead_retry(
    customer_thread: CustomerThread, fake_slack: FakeSlack, fake_oneroute: FakeOneRoute,
) -> None:
    running, parent = await customer_thread(in_window=False)  # refused, dead-lettered
    await answer_in_thread(fake_slack, parent, "Once more")
    (letter,) = await dead_letters(running, 1)
    fake_oneroute.customer_wrote(CUSTOMER, CONVERSATION)  # the customer writes again
    assert await running.relay.store.revive([letter.id], letter.died_at) == 1
    running.relay._wake([letter.destination])
    assert await sent_texts(fake_oneroute) == ["Once more"]
    await until(lambda: fake_slack.reactions)


async def test_a_reload_starts_the_new_listeners_and_closes_the_old(
    customer_thread: CustomerThread, tmp_path: Path, fake_slack: FakeSlack,
    fake_oneroute: FakeOneRoute,
) -> None:
    running, parent = await customer_thread()
    await until(lambda: fake_slack.sockets)
    config = tmp_path / "relay.yaml"
    config.write_text(config.read_text().replace(f"from_users: [{TEAMMATE}]",
                                                 "from_users: [U0NEWCOMER]"))
    assert await running.relay.reload()
    await until(lambda: fake_slack.socket_connections >= 2 and len(fake_slack.sockets) == 1)
    await answer_in_thread(fake_slack, parent, "old teammate")
    await answer_in_thread(fake_slack, parent, "From the newcomer", user="U0NEWCOMER")
    assert await sent_texts(fake_oneroute) == ["From the newcomer"]
    listeners = list(running.relay.answering.listeners)
    await running.relay.stop()  # closes every listener: no socket, no poller left running
    await until(lambda: not fake_slack.sockets)
    assert running.relay.answering.listeners == []
    pollers = [listener for listener in listeners if hasattr(listener, "running")]
    assert pollers and not any(poller.running for poller in pollers)


async def test_giving_up_on_an_answer_is_said_in_the_thread(
    customer_thread: CustomerThread, fake_slack: FakeSlack, fake_oneroute: FakeOneRoute,
) -> None:
    running, parent = await customer_thread(give_up_after="1s")
    fake_oneroute.faults.fail_next(1000, status=503)
    await answer_in_thread(fake_slack, parent, "Never arrives")
    (letter,) = await dead_letters(running, 1)
    assert letter.reason == "gave_up"
    await until(lambda: any("kept failing" in (m.text or "") and m.thread_ts == parent
                            for m in relay_posts(fake_slack)))


async def test_two_instances_take_turns_reading_a_telegram_bot(
    tmp_path: Path, fake_slack: FakeSlack, fake_telegram: FakeTelegram,
    fake_oneroute: FakeOneRoute, pg_url: str,
) -> None:
    """Telegram gives a bot's updates to one reader: two instances on one database do not
    interrupt each other, and when the reader stops, the other reads."""
    path = write_config(tmp_path, pg_url, fake_slack, fake_telegram, fake_oneroute)
    path.write_text(path.read_text().replace("give_up_after: 1h", "give_up_after: 1h, "
                                             "lane_lease: 2s"))
    relays = [Relay(load_config(path, environ={}), path) for _ in range(2)]
    for relay in relays:
        await relay.start()
    try:
        fake_oneroute.customer_wrote(CUSTOMER, CONVERSATION)
        async with TestClient(TestServer(relays[0].app())) as client:
            running = Running(relays[0], client)
            await running.post(customer_event())
            await until(lambda: fake_telegram.messages)
            first = fake_telegram.messages[0].message_id
            await recorded(running, "ops", first)
            fake_telegram.user_message(text="From one reader", reply_to=first)
            await until(lambda: fake_oneroute.sent)
            readers = [r for r in relays if any(getattr(listener, "running", False)
                                                for listener in r.answering.listeners)]
            assert len(readers) == 1
            await readers[0].stop()
            fake_telegram.user_message(text="From the other", reply_to=first)
            await until(lambda: len(fake_oneroute.sent) == 2)
        assert [m.text for m in fake_oneroute.sent] == ["From one reader", "From the other"]
        assert fake_telegram.count(409) == 0
    finally:
        for relay in relays:
            await relay.stop()


async def test_slack_url_verification_and_no_signing_secret(
    start: Start, tmp_path: Path, fake_slack: FakeSlack,
) -> None:
    running = await start()
    challenge = {"type": "url_verification", "token": "x", "challenge": "c-123"}
    headers, body = fake_slack.events_request(fake_slack_module.SIGNING_SECRET, challenge)
    response = await running.client.post("/slack/events", data=body, headers=headers)
    assert (response.status, await response.json()) == (200, {"challenge": "c-123"})
    config = tmp_path / "relay.yaml"
    config.write_text(config.read_text().replace(
        f"signing_secret: {fake_slack_module.SIGNING_SECRET}", ""))
    assert await running.relay.reload()
    response = await running.client.post("/slack/events", data=body, headers=headers)
    assert response.status == 404
