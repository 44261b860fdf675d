"""One place per platform: what `relay route --render` shows is what is sent, and the doctor
reads an answer exactly as the lanes do (both use the integration's one classifier)."""

from __future__ import annotations

import asyncio
import json
import textwrap
import time
import typing
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from relay.cli import main
from relay.config.load import load_config
from relay.config.model import Destination
from relay.destinations import INTEGRATIONS
from relay.doctor import diagnose
from relay.events import conversation_key, event_name, parse_event
from relay.ingest.signature import sign
from relay.service import Relay
from relay.store.base import Incoming
from tests.fakes import slack as fake_slack_module
from tests.fakes import telegram as fake_telegram_module
from tests.fakes.slack import FakeSlack
from tests.fakes.telegram import FakeTelegram
from tests.render_cases import SAMPLES
from tests.waiting import until

pytestmark = pytest.mark.filterwarnings("ignore::telegram.warnings.PTBDeprecationWarning")

SECRET = "integrations-test-secret"


def write_config(tmp_path: Path, slack: FakeSlack, telegram: FakeTelegram) -> Path:
    path = tmp_path / "relay.yaml"
    path.write_text(textwrap.dedent(f"""
        oneroute: {{secrets: ["{SECRET}"]}}
        storage: sqlite:///{tmp_path}/relay.db
        destinations:
          slack:
            type: slack
            token: {fake_slack_module.BOT_TOKEN}
            channel: {fake_slack_module.CHANNEL}
            api_url: {slack.api_url}
            max_per_second: 100
          telegram:
            type: telegram
            token: "{fake_telegram_module.TOKEN}"
            chat_id: {fake_telegram_module.CHAT_ID}
            api_url: {telegram.api_url}
            max_per_second: 100
        routes:
          - to: [slack, telegram]
    """))
    return path


@pytest.fixture
async def relay(
    tmp_path: Path, fake_slack: FakeSlack, fake_telegram: FakeTelegram
) -> AsyncIterator[Relay]:
    path = write_config(tmp_path, fake_slack, fake_telegram)
    running = Relay(load_config(path, environ={}), path)
    await running.start()
    yield running
    await running.stop()


def test_the_table_knows_every_destination_type() -> None:


    union = typing.get_args(typing.get_args(Destination)[0])
    types = {typing.get_args(model.model_fields["type"].annotation)[0] for model in union}
    assert types == set(INTEGRATIONS)


@pytest.mark.parametrize(
    "sample", ["new-message-text", "new-message-image", "new-message-document",
               "campaign-delivery-report", "new-message-from-agent"],
)
async def test_route_render_shows_exactly_what_is_sent(
    relay: Relay, tmp_path: Path, fake_slack: FakeSlack, fake_telegram: FakeTelegram,
    capsys: pytest.CaptureFixture[str], sample: str,
) -> None:
    event = tmp_path / "event.json"
    body = json.dumps(SAMPLES[sample]).encode()
    event.write_bytes(body)
    assert main(["route", "-c", str(tmp_path / "relay.yaml"), str(event), "--render"]) == 0
    preview = json.loads(capsys.readouterr().out)
    await relay.ingest.store.accept(_incoming(body))
    relay._wake(["slack", "telegram"])
    await until(lambda: len(fake_slack.messages) == len(preview["slack"])
                and len(fake_telegram.messages) == len(preview["telegram"]))
    for call, post in zip(preview["slack"], fake_slack.messages, strict=True):
        assert call["call"] == "chat.postMessage"
        assert post.payload == call["body"]
    for call, post in zip(preview["telegram"], fake_telegram.messages, strict=True):
        assert call["call"].lower() == post.method.lower()
        assert post.params == call["body"]


def _incoming(body: bytes) -> Incoming:
    event = parse_event(body)
    return Incoming(body, event_name(event), conversation_key(event), ("slack", "telegram"),
                    time.time())


async def test_doctor_and_lanes_read_an_answer_the_same_way(
    relay: Relay, tmp_path: Path, fake_slack: FakeSlack, fake_telegram: FakeTelegram,
) -> None:
    # Once they disagreed: a word the doctor called a bad token, the sender a refusal.
    word = json.dumps({"ok": False, "error": "not_allowed_token_type"}).encode()
    fake_slack.faults.answer_next(status=200, body=word, content_type="application/json")
    config = load_config(tmp_path / "relay.yaml", environ={})
    verdicts = {d.destination: d for d in await diagnose(config, timeout=2.0)}
    assert verdicts["slack"].status == "broken"
    assert "Slack rejected the token (not_allowed_token_type)" in verdicts["slack"].message
    fake_slack.faults.answer_next(status=200, body=word, content_type="application/json")
    body = json.dumps({"event": "newMessage", "message": {"content": "x"}}).encode()
    await post(relay, body)
    await until(lambda: fake_slack.count(200) >= 2)
    letters = await until_dead(relay, 1)
    assert [(d.destination, d.reason) for d in letters] == [("slack", "unauthorized")]


async def test_a_dead_letter_names_the_error_once(
    relay: Relay, fake_telegram: FakeTelegram
) -> None:
    fake_telegram.kick(fake_telegram_module.CHAT_ID)
    await post(relay, json.dumps({"event": "newMessage", "message": {"content": "k"}}).encode())
    (letter,) = await until_dead(relay, 1)
    assert letter.reason == "forbidden"
    assert letter.detail.startswith("Forbidden: bot was kicked"), letter.detail
    assert "Forbidden: Forbidden" not in letter.detail


async def post(relay: Relay, body: bytes) -> None:
    async with TestClient(TestServer(relay.app())) as client:
        response = await client.post("/webhooks/oneroute", data=body,
                                     headers={"x-oneroute-signature": sign(SECRET, body)})
        assert response.status == 200


async def until_dead(relay: Relay, count: int) -> list[Any]:
    letters: list[Any] = []

    async def check() -> None:
        letters[:] = await relay.store.dead_letters()

    for _ in range(500):
        await check()
        if len(letters) >= count:
            return letters
        await asyncio.sleep(0.02)
    raise AssertionError(f"expected {count} dead letters, found {letters}")
