"""Answers and a relay process that dies: an answer acknowledged to Slack is stored, so a
kill -9 before it reached OneRoute loses nothing — the restarted relay sends it, once."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from relay.store import store_for
from tests.fakes import oneroute as fake_oneroute_module
from tests.fakes import slack as fake_slack_module
from tests.fakes.oneroute import FakeOneRoute
from tests.fakes.slack import FakeSlack
from tests.process import RelayProcess, free_port
from tests.waiting import until

SECRET = "answers-process-secret"
CUSTOMER = "+2348099990000"


def write_config(tmp_path: Path, storage: str, slack: FakeSlack, oneroute: FakeOneRoute,
                 port: int) -> Path:
    config = tmp_path / "relay.yaml"
    config.write_text(f"""
server: {{host: 127.0.0.1, port: {port}}}
oneroute:
  secrets: ["{SECRET}"]
  api_key: {fake_oneroute_module.API_KEY}
  api_url: {oneroute.api_url}
storage: {storage}
delivery: {{lane_lease: 3s}}  # PostgreSQL: the killed instance's lanes are free again soon
destinations:
  support:
    type: slack
    token: {fake_slack_module.BOT_TOKEN}
    channel: {fake_slack_module.CHANNEL}
    api_url: {slack.api_url}
    thread_by_conversation: true
    max_per_second: 100
    replies: {{app_token: {fake_slack_module.APP_TOKEN}}}
routes:
  - to: [support]
""")
    return config


async def thread_recorded(storage: str, parent: str) -> None:
    """A person answers seconds after the relay posted; the test answers at once, so it
    waits until the relay has recorded the thread first (as `relay dead` does, a second
    store on the same data)."""
    store = store_for(storage)
    await store.open()
    try:
        for _ in range(1000):
            if await store.conversation_of("support", parent):  # type: ignore[attr-defined]
                return
            await asyncio.sleep(0.02)
    finally:
        await store.close()
    raise AssertionError("the relay did not record its thread")


async def test_kill_9_between_acknowledgement_and_send_then_sent_after_restart(
    tmp_path: Path, storage: str, fake_slack: FakeSlack, fake_oneroute: FakeOneRoute,
    processes: list[RelayProcess],
) -> None:
    fake_slack.scopes.add("reactions:write")
    fake_oneroute.customer_wrote(CUSTOMER, "conv-k")
    port = free_port()
    config = write_config(tmp_path, storage, fake_slack, fake_oneroute, port)
    relay = RelayProcess(config, port, SECRET)
    processes.append(relay)
    await relay.start()
    body = json.dumps({
        "event": "newMessage",
        "message": {"sender": {"name": "Ada", "authUser": False}, "content": "Hi"},
        "conversation": {"id": "conv-k", "customer": {"phone": CUSTOMER},
                         "Channel": {"phone": fake_oneroute_module.BUSINESS}},
    }).encode()
    assert await relay.post(body) == 200
    await until(lambda: fake_slack.messages)
    parent = fake_slack.messages[0].ts
    await thread_recorded(storage, parent)
    fake_oneroute.faults.fail_next(1000, status=503)  # OneRoute is down: nothing goes out
    ts = fake_slack.human_message(text="Survives kill -9", thread_ts=parent)
    envelope = fake_slack.push_event(fake_slack.message_event(ts))
    await until(lambda: envelope in fake_slack.acks and fake_oneroute.count(503) >= 1)
    await relay.kill()
    fake_oneroute.faults.clear()
    restarted = RelayProcess(config, port, SECRET)
    processes.append(restarted)
    await restarted.start()
    # Retried while OneRoute was down: the answer may wait out a backoff (jittered 2^attempts s).
    await until(lambda: fake_oneroute.sent, within=90)
    await until(lambda: fake_slack.reactions)
    assert [m.text for m in fake_oneroute.sent] == ["Survives kill -9"]
    assert [r.ts for r in fake_slack.reactions] == [ts]
    output = relay.output() + restarted.output()
    assert "Survives kill -9" not in output  # the answer's text is never logged
    assert fake_oneroute_module.API_KEY not in output
    assert fake_slack_module.APP_TOKEN not in output
