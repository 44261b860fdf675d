"""Operating the relay: /readyz, /metrics, reload, and logs that never show a secret."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import signal
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from relay.config.load import load_config
from relay.errors import StoreUnavailable
from relay.ingest.signature import sign
from relay.logs import JSONFormatter, TextFormatter, fields
from relay.redact import Redactor
from relay.service import Relay
from tests.fakes import slack as fake_slack_module
from tests.fakes import telegram as fake_telegram_module
from tests.fakes.slack import FakeSlack
from tests.fakes.telegram import FakeTelegram
from tests.process import RelayProcess, free_port
from tests.waiting import until

SECRET = "operate-test-secret"
BAD_SLACK_TOKEN = "xoxb-9999-wrong-token-operate"
BAD_TELEGRAM_TOKEN = "987654321:AAWrongTokenForTheOperateTests000"


def event(conversation: str, n: int, name: str = "newMessage") -> bytes:
    return json.dumps({"event": name, "message": {"content": f"{conversation}-{n}"},
                       "conversation": {"id": conversation}}).encode()


def config_text(tmp_path: Path, destinations: str, routes: str = "  - to: [a]\n") -> str:
    return (f'oneroute: {{secrets: ["{SECRET}"]}}\n'
            f"storage: sqlite:///{tmp_path}/relay.db\n"
            f"destinations:\n{destinations}routes:\n{routes}")


def sample(running: Running, name: str, labels: dict[str, str] | None = None) -> float:
    return running.relay.metrics.sample(name, **(labels or {}))


class Running:
    def __init__(self, relay: Relay, client: TestClient[Any, Any]) -> None:
        self.relay, self.client = relay, client

    async def post(self, body: bytes) -> int:
        response = await self.client.post("/webhooks/oneroute", data=body,
                                          headers={"x-oneroute-signature": sign(SECRET, body)})
        return response.status


@pytest.fixture
async def start(tmp_path: Path, aiohttp_client: Any) -> AsyncIterator[Any]:
    relays: list[Relay] = []

    async def run(text: str, redactor: Redactor | None = None) -> Running:
        file = tmp_path / "relay.yaml"
        file.write_text(text)
        relay = Relay(load_config(file, environ={}), file, redactor=redactor)
        await relay.start()
        relays.append(relay)
        return Running(relay, await aiohttp_client(relay.app()))

    yield run
    for relay in relays:
        await relay.stop()


def slack(fake: FakeSlack, name: str = "a", token: str = fake_slack_module.BOT_TOKEN,
          channel: str = fake_slack_module.CHANNEL) -> str:
    return (f"  {name}: {{type: slack, token: {token}, channel: {channel}, "
            f"api_url: '{fake.api_url}', max_per_second: 100}}\n")


# --- health and metrics -------------------------------------------------------------------------


async def test_readyz_reports_store_and_lanes(start: Any, tmp_path: Path) -> None:
    running = await start(config_text(tmp_path, "  a: {type: console}\n"))
    response = await running.client.get("/readyz")
    assert response.status == 200 and (await response.json())["status"] == "ready"
    await running.relay.lanes["a"].stop()
    response = await running.client.get("/readyz")
    assert response.status == 503
    assert (await response.json())["reason"] == "lanes not running: a"


async def test_readyz_is_503_while_the_store_cannot_take_events(start: Any, tmp_path: Path) -> None:
    running = await start(config_text(tmp_path, "  a: {type: console}\n"))

    async def cannot_write() -> None:
        raise StoreUnavailable("disk I/O error")

    running.relay.store.check_writable = cannot_write  # type: ignore[method-assign]
    response = await running.client.get("/readyz")
    assert response.status == 503 and "disk I/O error" in (await response.json())["reason"]


async def test_metrics_count_requests_deliveries_and_backlog(
    start: Any, tmp_path: Path, fake_slack: FakeSlack
) -> None:
    destinations = slack(fake_slack) + slack(fake_slack, "gone", channel="C0MISSING")
    running = await start(config_text(tmp_path, destinations, "  - to: [a, gone]\n"))
    accepted = {"event": "newMessage", "result": "accepted"}
    other = {"event": "other", "result": "accepted"}
    before = {k: sample(running, "relay_events_received_total", v)
              for k, v in {"accepted": accepted, "other": other}.items()}
    sent_before = sample(running, "relay_deliveries_total",
                         {"destination": "a", "outcome": "sent", "reason": ""})
    dead_before = sample(running, "relay_deliveries_total",
                         {"destination": "gone", "outcome": "dead", "reason": "channel_not_found"})
    unauthorized = sample(running, "relay_events_received_total",
                          {"event": "unknown", "result": "unauthorized"})
    assert await running.post(event("m", 1)) == 200
    assert await running.post(event("m", 2, name="secret customer text")) == 200
    response = await running.client.post("/webhooks/oneroute", data=b"{}")
    assert response.status == 401
    sent = {"destination": "a", "outcome": "sent", "reason": ""}
    await until(lambda: sample(running, "relay_deliveries_total", sent) == sent_before + 2)
    dead = {"destination": "gone", "outcome": "dead", "reason": "channel_not_found"}
    await until(lambda: sample(running, "relay_deliveries_total", dead) == dead_before + 2)
    text = await (await running.client.get("/metrics")).text()
    assert sample(running, "relay_events_received_total", accepted) == before["accepted"] + 1
    # An event name the relay does not know is `other`: no customer text in a label.
    assert sample(running, "relay_events_received_total", other) == before["other"] + 1
    assert "secret customer text" not in text
    assert sample(running, "relay_events_received_total",
                  {"event": "unknown", "result": "unauthorized"}) == unauthorized + 1
    assert sample(running, "relay_deliveries_total",
                  {"destination": "a", "outcome": "sent", "reason": ""}) == sent_before + 2
    assert sample(running, "relay_delivery_latency_seconds_count", {"destination": "a"}) >= 2
    assert sample(running, "relay_pending_deliveries", {"destination": "a"}) == 0
    assert sample(running, "relay_oldest_pending_age_seconds", {"destination": "a"}) == 0
    assert sample(running, "relay_dead_letters") == 2
    for name in ("relay_events_received_total", "relay_deliveries_total",
                 "relay_delivery_latency_seconds_bucket", "relay_pending_deliveries",
                 "relay_oldest_pending_age_seconds", "relay_dead_letters",
                 "relay_config_reloads_total"):
        assert f"\n{name}" in text


async def test_metrics_show_pending_backlog_and_its_age(
    start: Any, tmp_path: Path, fake_slack: FakeSlack
) -> None:
    running = await start(config_text(tmp_path, slack(fake_slack)))
    fake_slack.faults.fail_next(1000)
    assert await running.post(event("p", 1)) == 200
    await until(lambda: fake_slack.count(503) >= 1)
    await running.client.get("/metrics")
    assert sample(running, "relay_pending_deliveries", {"destination": "a"}) == 1
    assert sample(running, "relay_oldest_pending_age_seconds", {"destination": "a"}) > 0
    assert sample(running, "relay_deliveries_total",
                  {"destination": "a", "outcome": "retried", "reason": "server_error"}) >= 1


# --- reload ------------------------------------------------------------------------------------


async def test_reload_good_config_swaps_routes_and_lanes(
    start: Any, tmp_path: Path, fake_slack: FakeSlack
) -> None:
    running = await start(config_text(tmp_path, "  a: {type: console}\n"))
    successes = sample(running, "relay_config_reloads_total", {"result": "success"})
    file = tmp_path / "relay.yaml"
    file.write_text(config_text(tmp_path, "  a: {type: console}\n" + slack(fake_slack, "b"),
                                "  - to: [b]\n"))
    assert await running.relay.reload()
    assert set(running.relay.lanes) == {"a", "b"}
    assert await running.post(event("r", 1)) == 200
    await until(lambda: len(fake_slack.messages) == 1)
    assert sample(running, "relay_config_reloads_total", {"result": "success"}) == successes + 1
    assert sample(running, "relay_config_last_reload_successful") == 1
    assert sample(running, "relay_config_last_reload_success_timestamp_seconds") > 0


@pytest.mark.parametrize(
    "broken",
    ["destinations: [not, valid\n",  # not YAML
     "oneroute: {secrets: ['x']}\n",  # YAML, but invalid
     None],  # half valid: everything right but one route naming a missing destination
)
async def test_reload_with_an_invalid_config_keeps_the_last_good_one(
    start: Any, tmp_path: Path, broken: str | None, caplog: pytest.LogCaptureFixture
) -> None:
    running = await start(config_text(tmp_path, "  a: {type: console}\n"))
    failures = sample(running, "relay_config_reloads_total", {"result": "failure"})
    text = broken or config_text(tmp_path, "  a: {type: console}\n  b: {type: console}\n",
                                 "  - to: [b]\n  - to: [c]\n")
    (tmp_path / "relay.yaml").write_text(text)
    with caplog.at_level(logging.ERROR, logger="relay.service"):
        assert not await running.relay.reload()
    assert "reload failed; still running the previous config" in caplog.text
    assert str(tmp_path / "relay.yaml") in caplog.text
    assert set(running.relay.lanes) == {"a"}
    response = await running.client.post(
        "/webhooks/oneroute", data=event("k", 1),
        headers={"x-oneroute-signature": sign(SECRET, event("k", 1))})
    assert (await response.json())["destinations"] == ["a"]
    assert sample(running, "relay_config_reloads_total", {"result": "failure"}) == failures + 1
    assert sample(running, "relay_config_last_reload_successful") == 0



async def test_a_refused_reload_logs_no_secret(
    start: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    running = await start(config_text(tmp_path, "  a: {type: console}\n"))
    secret = "T0SECRET/B0SECRET/reloadsecretpath0123"
    token = "xoxb-reload-token-0123456789"
    (tmp_path / "relay.yaml").write_text(config_text(
        tmp_path,
        f"  hook: {{type: slack, webhook_url: 'hooks.slack.com/services/{secret}'}}\n"
        f"  bot: {{type: slack, token: '{token} ', channel: C1}}\n"
        "  a: {type: console}\n"))
    with caplog.at_level(logging.ERROR, logger="relay.service"):
        assert not await running.relay.reload()
    assert "reload failed" in caplog.text and "webhook_url" in caplog.text
    assert secret not in caplog.text and "reloadsecretpath" not in caplog.text
    assert token not in caplog.text

async def test_reload_dead_letters_rows_of_a_removed_destination(
    start: Any, tmp_path: Path, fake_slack: FakeSlack
) -> None:
    running = await start(config_text(tmp_path, slack(fake_slack)))
    fake_slack.faults.fail_next(1000)
    assert await running.post(event("g", 1)) == 200
    await until(lambda: fake_slack.count(503) >= 1)
    (tmp_path / "relay.yaml").write_text(config_text(tmp_path, "  c: {type: console}\n",
                                                      "  - to: [c]\n"))
    assert await running.relay.reload()
    (letter,) = await running.relay.store.dead_letters()
    assert (letter.destination, letter.reason) == ("a", "destination_removed")


@pytest.mark.parametrize("trigger", ["sighup", "watch"])
async def test_a_running_process_reloads(
    tmp_path: Path, fake_slack: FakeSlack, trigger: str
) -> None:
    """On SIGHUP, or by itself with --watch when the file is saved (written, renamed)."""
    port = free_port()
    file = tmp_path / "relay.yaml"
    server = f"server: {{host: 127.0.0.1, port: {port}}}\n"
    file.write_text(server + config_text(tmp_path, "  a: {type: console}\n"))
    relay = RelayProcess(file, port, SECRET, *(["--watch"] if trigger == "watch" else []))

    def change(text: str) -> None:
        saved = tmp_path / "relay.yaml.new"
        saved.write_text(text)
        saved.replace(file)
        if trigger == "sighup":
            relay.signal(signal.SIGHUP)

    await relay.start()
    try:
        change(server + config_text(tmp_path, slack(fake_slack), "  - to: [a]\n"))
        await until(lambda: "config reloaded" in relay.output(), within=15)
        if trigger == "watch":
            assert "config file changed; reloading" in relay.output()
        assert await relay.post(event("h", 1)) == 200
        await until(lambda: len(fake_slack.messages) == 1)
        change("oneroute: [broken\n")
        await until(lambda: "reload failed" in relay.output(), within=15)
        assert await relay.post(event("h", 2)) == 200
        await until(lambda: len(fake_slack.messages) == 2)
        relay.signal(signal.SIGTERM)
        assert await relay.wait() == 0
    finally:
        relay.stop_quietly()


async def test_reloads_at_once_run_one_after_the_other(
    start: Any, tmp_path: Path, fake_slack: FakeSlack
) -> None:
    running = await start(config_text(tmp_path, "  a: {type: console}\n"))
    (tmp_path / "relay.yaml").write_text(
        config_text(tmp_path, "  a: {type: console}\n" + slack(fake_slack, "b"), "  - to: [b]\n")
    )
    lanes_before = dict(running.relay.lanes)
    assert await asyncio.gather(*(running.relay.reload() for _ in range(3))) == [True] * 3
    assert set(running.relay.lanes) == {"a", "b"}
    assert running.relay.lanes["a"] is lanes_before["a"]  # unchanged: not restarted
    assert all(lane.running for lane in running.relay.lanes.values())
    lane_tasks = [t for t in asyncio.all_tasks() if t.get_name().startswith("lane:")]
    assert sorted(t.get_name() for t in lane_tasks) == ["lane:a", "lane:b"]  # no stray lane
    await running.relay.stop()
    assert not await running.relay.reload()  # none after stop: it would start lanes again
    assert running.relay.lanes == {}


async def test_a_slow_reload_cannot_overwrite_a_newer_one(
    start: Any, tmp_path: Path, fake_slack: FakeSlack
) -> None:
    running = await start(config_text(tmp_path, "  a: {type: console}\n"))
    file = tmp_path / "relay.yaml"
    lane, stop = running.relay.lanes["a"], running.relay.lanes["a"].stop
    stopping = asyncio.Event()

    async def slow_stop(grace: float = 10.0) -> None:
        stopping.set()
        await asyncio.sleep(0.3)
        await stop(grace)

    lane.stop = slow_stop  # type: ignore[method-assign]
    file.write_text(config_text(tmp_path, slack(fake_slack)))  # a changes: its lane restarts
    first = asyncio.create_task(running.relay.reload())
    # The first reload has read the file and is stopping the old lane (waited for: a fixed
    # sleep could end before it got there, and the test would prove nothing).
    await asyncio.wait_for(stopping.wait(), 20)
    file.write_text(config_text(tmp_path, "  a: {type: console}\n  b: {type: console}\n"))
    assert await running.relay.reload() and await first
    assert set(running.relay.config.destinations) == {"a", "b"}  # the newest file wins
    assert set(running.relay.lanes) == {"a", "b"}



async def test_editing_a_template_file_and_reloading_applies_the_new_template(
    start: Any, tmp_path: Path, fake_slack: FakeSlack
) -> None:
    template = tmp_path / "body.j2"
    template.write_text("old layout: {{ content }}")
    text = config_text(tmp_path, slack(fake_slack).replace("}\n", ", template_file: body.j2}\n"))
    running = await start(text)
    assert await running.post(event("t", 1)) == 200
    await until(lambda: len(fake_slack.messages) == 1)
    template.write_text("new layout: {{ content }}")  # the config file itself is unchanged
    assert await running.relay.reload()
    assert await running.post(event("t", 2)) == 200
    await until(lambda: len(fake_slack.messages) == 2)
    first, second = (post.text for post in fake_slack.messages)
    assert "old layout: t-1" in first and "new layout: t-2" in second


async def test_a_reload_that_cannot_build_a_destination_stops_no_lane(
    start: Any, tmp_path: Path, fake_slack: FakeSlack, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    running = await start(config_text(tmp_path, "  a: {type: console}\n" + slack(fake_slack, "b"),
                                      "  - to: [a, b]\n"))
    lanes = dict(running.relay.lanes)
    from relay import service

    real_build = service.build_courier

    def build(name: str, destination: Any, context: Any) -> Any:
        if name == "c":  # e.g. its template file was removed after the file was checked
            raise FileNotFoundError(2, "No such file or directory", "gone.j2")
        return real_build(name, destination, context)

    monkeypatch.setattr(service, "build_courier", build)
    (tmp_path / "relay.yaml").write_text(config_text(
        tmp_path, "  a: {type: console}\n" + slack(fake_slack, "b", channel="C0OTHER")
        + "  c: {type: console}\n", "  - to: [a, b, c]\n"))
    assert not await running.relay.reload()
    assert "destinations.c: template" in caplog.text and "gone.j2" in caplog.text
    assert running.relay.lanes == lanes  # b (changed) was not stopped: nothing was swapped
    assert all(lane.running for lane in lanes.values())
    assert set(running.relay.config.destinations) == {"a", "b"}

# --- logs --------------------------------------------------------------------------------------


@pytest.fixture
def captured_logs() -> Iterator[tuple[io.StringIO, Redactor]]:
    """Everything every logger writes at DEBUG, through the relay's own formatters, and the
    redactor they mask with (hand it to the relay, as `relay serve` does)."""
    stream = io.StringIO()
    redactor = Redactor()
    handlers = [logging.StreamHandler(stream), logging.StreamHandler(stream)]
    handlers[0].setFormatter(TextFormatter(redactor))
    handlers[1].setFormatter(JSONFormatter(redactor))
    root = logging.getLogger()
    old_level = root.level
    root.setLevel(logging.DEBUG)
    for handler in handlers:
        root.addHandler(handler)
    yield stream, redactor
    for handler in handlers:
        root.removeHandler(handler)
    root.setLevel(old_level)


async def test_no_secret_in_logs_when_destinations_fail(
    start: Any, tmp_path: Path, fake_slack: FakeSlack, fake_telegram: FakeTelegram,
    captured_logs: tuple[io.StringIO, Redactor],
) -> None:
    stream, redactor = captured_logs
    webhook = fake_slack.add_webhook()
    fake_slack.revoke_webhook(webhook)
    destinations = (
        slack(fake_slack, "wrong-token", token=BAD_SLACK_TOKEN)
        + slack(fake_slack, "missing-channel", channel="C0NOWHERE")
        + f"  bad-hook: {{type: slack, webhook_url: '{webhook}'}}\n"
        + f"  bad-bot: {{type: telegram, token: '{BAD_TELEGRAM_TOKEN}', chat_id: -100,"
          f" api_url: '{fake_telegram.api_url}'}}\n"
        + f"  no-chat: {{type: telegram, token: '{fake_telegram_module.TOKEN}', chat_id: -1009,"
          f" api_url: '{fake_telegram.api_url}'}}\n"
    )
    running = await start(config_text(
        tmp_path, destinations,
        "  - to: [wrong-token, missing-channel, bad-hook, bad-bot, no-chat]\n"), redactor)
    assert await running.post(event("s", 1)) == 200
    store = running.relay.store
    dead = 0

    async def count_dead() -> None:
        nonlocal dead
        dead = await store.dead_count()

    for _ in range(500):  # each destination fails permanently on its first attempt
        await count_dead()
        if dead == 5:
            break
        await asyncio.sleep(0.02)
    letters = await store.dead_letters()
    assert sorted(d.reason for d in letters) == [
        "channel_not_found", "chat_not_found", "unauthorized", "unauthorized", "unauthorized"]
    written = stream.getvalue()
    assert written.count("dead:") >= 5  # the failures were logged, at length
    for secret in (SECRET, BAD_SLACK_TOKEN, BAD_TELEGRAM_TOKEN, fake_telegram_module.TOKEN,
                   fake_slack_module.BOT_TOKEN, webhook, webhook.split("/services/")[1]):
        assert secret not in written, secret
        assert all(secret not in d.detail for d in letters)


def test_log_lines_carry_structured_fields_as_text_and_json() -> None:
    record = logging.LogRecord("relay.lanes", logging.INFO, __file__, 1, "sent", (), None)
    record.__dict__.update(fields(event_id=7, destination="ops", conversation="c 1", attempt=2))
    text = TextFormatter().format(record)
    assert text.endswith(
        'relay.lanes: sent event_id=7 destination=ops conversation="c 1" attempt=2'
    )
    entry = json.loads(JSONFormatter().format(record))
    assert entry["message"] == "sent" and entry["event_id"] == 7 and entry["level"] == "info"
    assert "reason" not in entry
