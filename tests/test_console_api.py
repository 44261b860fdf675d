"""The operator console's API and its guard (relay/console/), on a running relay of each
engine: events posted to the webhook, delivered to the fake Slack, read back as JSON."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from relay.config.load import load_config, parse_config
from relay.errors import ConfigError
from relay.ingest.signature import sign
from relay.service import Relay
from tests.fakes import slack as fake_slack_module
from tests.fakes.oneroute import customer_event
from tests.fakes.slack import FakeSlack

SECRET = "console-test-secret"
TOKEN = "console-admin-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


class Console:
    def __init__(
        self, relay: Relay, webhook: TestClient[Any, Any], console: TestClient[Any, Any]
    ) -> None:
        self.relay, self.webhook, self.client = relay, webhook, console

    async def post_event(self, body: bytes) -> int:
        response = await self.webhook.post(
            "/webhooks/oneroute", data=body, headers={"x-oneroute-signature": sign(SECRET, body)}
        )
        assert response.status == 200
        return int((await response.json())["event_id"])

    async def get(self, path: str, status: int = 200, **headers: str) -> Any:
        response = await self.client.get(path, headers={**AUTH, **headers})
        assert response.status == status, await response.text()
        return await response.json()

    async def post(self, path: str, data: Any, status: int = 200, **headers: str) -> Any:
        response = await self.client.post(path, json=data, headers={**AUTH, **headers})
        assert response.status == status, await response.text()
        return await response.json()


@pytest.fixture
async def console(
    tmp_path: Path, storage: str, fake_slack: FakeSlack, aiohttp_client: Any
) -> AsyncIterator[Console]:
    file = tmp_path / "relay.yaml"
    file.write_text(
        f'oneroute: {{secrets: ["{SECRET}"]}}\n'
        f"storage: {storage}\n"
        f"admin: {{token: {TOKEN}}}\n"
        "destinations:\n"
        f"  slack: {{type: slack, token: {fake_slack_module.BOT_TOKEN}, "
        f"channel: {fake_slack_module.CHANNEL}, api_url: '{fake_slack.api_url}', "
        "max_per_second: 100}\n"
        "  quiet: {type: console, enabled: false}\n"
        "routes:\n"
        "  - {name: reports, when: {event: campaignDeliveryReport}, to: [quiet]}\n"
        "  - {name: everything, to: [slack]}\n"
    )
    relay = Relay(load_config(file, environ={}), file)
    await relay.start()
    try:
        yield Console(
            relay, await aiohttp_client(relay.app()), await aiohttp_client(relay.console_app())
        )
    finally:
        await relay.stop()


async def delivered(console: Console, event_id: int, state: str = "sent") -> dict[str, Any]:
    """The event's page once every delivery of it is in `state` (within 20 s)."""
    deadline = time.monotonic() + 20.0
    while True:
        found: dict[str, Any] = await console.get(f"/api/events/{event_id}")
        if all(d["state"] == state for d in found["deliveries"]):
            return found
        assert time.monotonic() < deadline, found
        await asyncio.sleep(0.02)


# --- the guard ----------------------------------------------------------------------------------


async def test_every_api_request_needs_the_token(console: Console) -> None:
    for headers in ({}, {"Authorization": "Bearer wrong-token"}, {"Authorization": TOKEN}):
        response = await console.client.get("/api/events", headers=headers)
        assert response.status == 401
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
        assert TOKEN not in await response.text()
    response = await console.client.post("/api/dead/retry", json={"all": True})
    assert response.status == 401
    assert (await console.get("/api/events"))["events"] == []


async def test_page_shells_load_without_the_token_and_hold_no_data(console: Console) -> None:
    event_id = await console.post_event(customer_event("c1", 1))
    for path in ("/", "/lanes", "/dead", f"/events/{event_id}", "/static/console.js"):
        response = await console.client.get(path)
        assert response.status == 200, path
        text = await response.text()
        assert "c1-msg-1" not in text and TOKEN not in text
        assert response.headers["X-Frame-Options"] == "DENY"
        assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]
    assert 'data-token-required="yes"' in await (await console.client.get("/")).text()
    assert (await console.client.get("/events/x/y")).status in (401, 404)


async def test_changing_requests_from_another_origin_are_refused(console: Console) -> None:
    for headers in (
        {"Origin": "https://evil.example"},
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site"},
        {"Origin": "http://[evil"},
    ):
        refused = await console.post("/api/dead/retry", {"all": True}, status=403, **headers)
        assert "another origin" in refused["error"]
    host = console.client.server.host, console.client.server.port
    same = {"Origin": f"http://{host[0]}:{host[1]}", "Sec-Fetch-Site": "same-origin"}
    assert await console.post("/api/dead/retry", {"all": True}, **same) == {"retried": 0}
    assert await console.post("/api/dead/retry", {"all": True}) == {"retried": 0}  # a script


async def test_a_changing_request_must_say_it_is_json(
    console: Console, fake_slack: FakeSlack
) -> None:
    # A page of another site can post a <form enctype="text/plain"> whose body reads
    # {"all": true, "x": "="} without a preflight, and a browser may send no Origin with
    # it: the console takes only a body declared as JSON (which needs a preflight).
    fake_slack.channels[fake_slack_module.CHANNEL].archived = True
    await delivered(console, await console.post_event(customer_event("c1", 1)), "dead")
    body = b'{"all": true, "x": "="}'
    for content_type in (
        "text/plain",
        "text/plain;charset=UTF-8",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "application/octet-stream",
    ):
        response = await console.client.post(
            "/api/dead/retry", data=body, headers={**AUTH, "Content-Type": content_type}
        )
        assert response.status == 415, content_type
        assert "application/json" in (await response.json())["error"]
    assert len((await console.get("/api/dead"))["dead"]) == 1  # nothing retried
    json_body = {**AUTH, "Content-Type": "application/json; charset=utf-8"}
    response = await console.client.post(
        "/api/dead/retry", data=b'{"all": true}', headers=json_body
    )
    assert await response.json() == {"retried": 1}


async def test_without_a_token_only_localhost_names_are_answered(
    tmp_path: Path, aiohttp_client: Any
) -> None:
    file = tmp_path / "relay.yaml"
    file.write_text(f'oneroute: {{secrets: ["{SECRET}"]}}\nstorage: sqlite:///{tmp_path}/r.db\n')
    relay = Relay(load_config(file, environ={}), file)
    await relay.start()
    try:
        client = await aiohttp_client(relay.console_app())
        assert (await client.get("/api/lanes")).status == 200
        for host in ("localhost:8081", "127.0.0.1:8081", "[::1]:8081"):
            assert (await client.get("/api/lanes", headers={"Host": host})).status == 200
        rebound = await client.get("/api/lanes", headers={"Host": "attacker.example:8081"})
        assert rebound.status == 403
        assert "admin.token" in (await rebound.json())["error"]
        for odd in ("a]b", "[::1"):  # not a host name at all: refused, not a 500
            assert (await client.get("/api/lanes", headers={"Host": odd})).status == 403
        # Without a token nothing else stops a form of another site: no Origin, text/plain.
        form = await client.post(
            "/api/dead/retry",
            data=b'{"all": true, "x": "="}',
            headers={"Content-Type": "text/plain"},
        )
        assert form.status == 415
    finally:
        await relay.stop()


def test_a_console_open_to_other_machines_needs_a_token() -> None:
    base = 'oneroute: {secrets: ["' + SECRET + '"]}\n'
    with pytest.raises(ConfigError) as refused:
        parse_config(base + "admin: {host: 0.0.0.0}\n", environ={})
    assert "admin.token" in str(refused.value) and "127.0.0.1" in str(refused.value)
    for host in ("127.0.0.1", "::1", "localhost", "127.0.0.2"):
        assert parse_config(base + f'admin: {{host: "{host}"}}\n', environ={}).admin.host == host
    config = parse_config(base + f"admin: {{host: 0.0.0.0, token: {TOKEN}}}\n", environ={})
    assert TOKEN in config.secrets()


# --- events -------------------------------------------------------------------------------------


async def test_events_newest_first_with_deliveries_routes_and_who(console: Console) -> None:
    first = await console.post_event(customer_event("c1", 1))
    second = await console.post_event(customer_event("c2", 1, name="campaignDeliveryReport"))
    await delivered(console, first)
    listed = (await console.get("/api/events"))["events"]
    assert [e["id"] for e in listed] == [second, first]
    newest, oldest = listed
    assert newest["routes"] == ["reports"] and newest["deliveries"] == []  # quiet is off
    assert oldest["routes"] == ["everything"]
    assert oldest["sender"] == "Ada" and oldest["customer"] == "Ada Customer"
    assert oldest["channel"] == "Lagos line" and oldest["medium"] == "WHATSAPP"
    assert oldest["text"] == "c1-msg-1" and oldest["conversation"] == "c1"
    assert [(d["destination"], d["state"]) for d in oldest["deliveries"]] == [("slack", "sent")]


async def test_filters_and_keyset_pages(console: Console) -> None:
    ids = [await console.post_event(customer_event(f"c{n % 2}", n)) for n in range(5)]
    for i in ids:
        await delivered(console, i)
    page = await console.get("/api/events?limit=2")
    assert [e["id"] for e in page["events"]] == ids[:2:-1] and page["next"] == ids[3]
    page = await console.get(f"/api/events?limit=2&before={page['next']}")
    assert [e["id"] for e in page["events"]] == [ids[2], ids[1]]
    page = await console.get(f"/api/events?limit=2&before={page['next']}")
    assert [e["id"] for e in page["events"]] == [ids[0]] and page["next"] is None
    only = await console.get("/api/events?conversation=c1&state=sent&destination=slack")
    assert [e["id"] for e in only["events"]] == [ids[3], ids[1]]
    assert (await console.get("/api/events?state=dead"))["events"] == []
    assert (await console.get("/api/events?event=campaignDeliveryReport"))["events"] == []
    for bad in ("state=lost", "limit=0", "before=x"):
        assert "error" in await console.get(f"/api/events?{bad}", status=400)


async def test_an_events_page_shows_body_decision_preview_and_attempts(
    console: Console,
) -> None:
    event_id = await console.post_event(customer_event("c1", 1))
    shown = await delivered(console, event_id)
    assert shown["body"]["message"]["content"] == "c1-msg-1"
    assert shown["decision"]["routes"] == ["everything"]
    assert shown["decision"]["destinations"] == ["slack"]
    (call,) = shown["preview"]["slack"]
    assert "c1-msg-1" in json.dumps(call) and fake_slack_module.BOT_TOKEN not in json.dumps(shown)
    assert "attempts_made" in shown["deliveries"][0]
    missing = await console.get("/api/events/999999", status=404)
    assert "no event" in missing["error"]


# --- dead letters and lanes ---------------------------------------------------------------------


async def test_dead_letters_retried_one_and_by_filter_then_delivered(
    console: Console, fake_slack: FakeSlack
) -> None:
    fake_slack.channels[fake_slack_module.CHANNEL].archived = True
    ids = [await console.post_event(customer_event(f"c{n}", n)) for n in range(3)]
    for event_id in ids:
        await delivered(console, event_id, "dead")
    dead = (await console.get("/api/dead"))["dead"]
    assert [d["event_id"] for d in dead] == ids[::-1]
    assert {d["reason"] for d in dead} == {"is_archived"}
    assert [d["event_id"] for d in (await console.get("/api/dead?conversation=c1"))["dead"]] == [
        ids[1]
    ]
    lanes = {lane["destination"]: lane for lane in (await console.get("/api/lanes"))["lanes"]}
    assert lanes["slack"]["dead"] == 3 and lanes["slack"]["running"]
    assert lanes["quiet"]["enabled"] is False

    fake_slack.channels[fake_slack_module.CHANNEL].archived = False
    assert await console.post("/api/dead/retry", {"ids": [dead[0]["id"]]}) == {"retried": 1}
    shown = await delivered(console, ids[2])
    (retried,) = shown["deliveries"]
    assert [a["outcome"] for a in retried["attempts_made"]] == ["dead", "sent"]
    assert retried["attempts_made"][0]["reason"] == "is_archived"
    assert all(a["duration"] >= 0 and a["at"] > 0 for a in retried["attempts_made"])
    assert await console.post("/api/dead/retry", {"all": True, "conversation": "c0"}) == {
        "retried": 1
    }
    await delivered(console, ids[0])
    assert [d["event_id"] for d in (await console.get("/api/dead"))["dead"]] == [ids[1]]
    for bad in ({"ids": []}, {"ids": ["1"]}, {"all": "yes"}, [1]):
        await console.post("/api/dead/retry", bad, status=400)
    lanes = {lane["destination"]: lane for lane in (await console.get("/api/lanes"))["lanes"]}
    assert lanes["slack"]["sent_last_hour"] == 2 and lanes["slack"]["pending"] == 0


async def test_a_retry_body_with_a_key_it_does_not_know_changes_nothing(
    console: Console, fake_slack: FakeSlack
) -> None:
    # A misspelt filter must not widen "retry all that match" to every dead letter, nor a
    # filter beside "ids" be silently ignored.
    fake_slack.channels[fake_slack_module.CHANNEL].archived = True
    await delivered(console, await console.post_event(customer_event("c1", 1)), "dead")
    (dead,) = (await console.get("/api/dead"))["dead"]
    for bad in (
        {"all": True, "destinaton": "elsewhere"},
        {"all": True, "state": "sent"},
        {"all": True, "ids": [dead["id"] + 1]},
        {"ids": [dead["id"]], "conversation": "c9"},
    ):
        refused = await console.post("/api/dead/retry", bad, status=400)
        assert "unknown" in refused["error"], bad
    assert [d["id"] for d in (await console.get("/api/dead"))["dead"]] == [dead["id"]]


async def test_numbers_out_of_range_and_nul_characters_are_a_400_not_an_outage(
    console: Console,
) -> None:
    # Ids are 64-bit in both stores and PostgreSQL text holds no NUL: such input is the
    # asker's mistake (400), not a 500 or a "store is unavailable" 503.
    too_big = 2**63
    for path in (
        f"/api/events?before={too_big}",
        f"/api/dead?before={too_big}",
        f"/api/events/{too_big}",
        "/api/events?conversation=c1%00",
        "/api/dead?destination=a%00b",
    ):
        assert "error" in await console.get(path, status=400), path
    for bad in ({"ids": [too_big]}, {"ids": [-too_big]}, {"all": True, "event": "x\x00"}):
        await console.post("/api/dead/retry", bad, status=400)


async def test_no_answer_shows_a_secret(console: Console, fake_slack: FakeSlack) -> None:
    # A customer who pastes the bot token into a message: the console masks it too.
    event_id = await console.post_event(customer_event(fake_slack_module.BOT_TOKEN, 1))
    await delivered(console, event_id)
    for path in ("/api/events", f"/api/events/{event_id}", "/api/lanes", "/api/dead"):
        text = json.dumps(await console.get(path))
        assert fake_slack_module.BOT_TOKEN not in text and TOKEN not in text and SECRET not in text
    assert "[REDACTED]" in json.dumps(await console.get(f"/api/events/{event_id}"))


async def test_a_secret_holding_a_quote_or_a_backslash_is_masked_too(console: Console) -> None:
    # JSON writes `"` and `\\` escaped, so masking the encoded answer alone misses such a
    # secret (a generated database password or API key may hold either).
    secret = 'pa"ss\\word-0123456789'
    console.relay.redactor.register(secret)
    event_id = await console.post_event(customer_event(f"c1 {secret}", 1))
    await delivered(console, event_id)
    for path in ("/api/events", f"/api/events/{event_id}"):
        response = await console.client.get(path, headers=AUTH)
        text = await response.text()
        assert json.dumps(secret)[1:-1] not in text and secret not in text, path
        assert "[REDACTED]" in text


async def test_a_store_outage_is_a_503_with_the_reason(console: Console) -> None:
    await console.relay.store.close()
    answer = await console.get("/api/events", status=503)
    assert "the store is unavailable" in answer["error"]


async def test_answers_to_customers_are_listed_with_their_state(console: Console) -> None:
    """An answer a teammate wrote in Slack is stored as an event for its answer lane
    (relay/answers/intake.py); the console shows who wrote what, and its delivery."""
    from relay.answers.intake import answer_body, answer_lane
    from relay.answers.model import Reply
    from relay.store.base import Incoming

    reply = Reply("slack", "slack", "C1:1.2", "U0TEAMMATE", "On its way", 1.0, channel="C1")
    body = answer_body(reply, "c1")
    await console.relay.store.accept(
        Incoming(body, "answer", "c1", (answer_lane("slack"),), time.time())
    )
    (shown,) = (await console.get("/api/events?event=answer"))["events"]
    assert shown["answer"] is True and shown["routes"] == []
    assert (shown["sender"], shown["text"], shown["medium"]) == (
        "U0TEAMMATE",
        "On its way",
        "slack",
    )
    assert [(d["destination"], d["state"]) for d in shown["deliveries"]] == [
        ("@answers:slack", "pending")
    ]
    page = await console.get(f"/api/events/{shown['id']}")
    assert "OneRoute" in page["preview"]["@answers:slack"]["note"]
    assert page["decision"]["routes"] == [] and "answer" in page["decision"]["note"]
    lanes = {lane["destination"]: lane for lane in (await console.get("/api/lanes"))["lanes"]}
    assert lanes["@answers:slack"]["type"] == "answers" and lanes["@answers:slack"]["pending"] == 1
