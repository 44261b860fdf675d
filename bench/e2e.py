"""2. End to end at idle: from the POST to the fake Slack / Telegram server receiving the call.

The relay runs as its own process and delivers through the real slack-sdk and
python-telegram-bot clients to the fakes, which run in this process (so the POST's start
and the fake's record share one clock, time.monotonic) and enforce the platforms' rate
limits. Events go out one at a time, spaced wider than the 1/s limits, so nothing waits
for pacing: this is the latency of a quiet relay.

Baseline, in the same run: a POST to the bare aiohttp handler (the HTTP round trip) plus
the relay's own sender posting the same rendered message straight to the fake (the SDK
round trip): what the relay's path would cost without its durable write, lane and pacing.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import aiohttp

from bench.common import (
    PATH,
    bare_server,
    conversation_id,
    free_port,
    median,
    percentile,
    platform_destinations,
    relay_server,
    render_body,
    running,
    save,
    sign,
    table,
    template_spec,
    write_config,
)
from relay.integrations.slack.render import render_slack
from relay.integrations.slack.send import SlackSender
from relay.integrations.telegram.render import render_telegram
from relay.integrations.telegram.send import TelegramSender
from tests.fakes import slack as fake_slack
from tests.fakes import telegram as fake_telegram
from tests.fakes.slack import FakeSlack
from tests.fakes.telegram import FakeTelegram

TARGET_MEDIAN_MS = 50.0
TELEGRAM_CHAT = 4242  # a private chat: 1 message/s, like a Slack channel
SPACING = 1.25  # seconds between events: wider than both 1/s limits


def relay_config(directory: Path, port: int, slack: FakeSlack, telegram: FakeTelegram) -> Path:
    return write_config(
        directory,
        port,
        platform_destinations(slack.api_url, telegram.api_url, TELEGRAM_CHAT),
        "- {name: everything, to: [support-slack, ops-telegram]}",
    )


async def post(session: aiohttp.ClientSession, url: str, body: bytes) -> float:
    """POST a signed event; the seconds until the answer (which must be 200)."""
    started = time.monotonic()
    async with session.post(url, data=body, headers={"x-oneroute-signature": sign(body)}) as r:
        await r.read()
        if r.status != 200:
            raise RuntimeError(f"POST answered {r.status}")
    return time.monotonic() - started


def arrival(messages: list[Any], marker: str) -> float | None:
    for message in reversed(messages):
        if marker in (message.text or ""):
            return float(message.at)
    return None


async def measure_relay(
    samples: int,
    slack: FakeSlack,
    telegram: FakeTelegram,
    directory: Path,
    patches: Sequence[str] = (),
) -> dict[str, list[float]]:
    spec = template_spec()
    port = free_port()
    directory = directory / ("+".join(patches).replace("/", "_") or "shipped")
    directory.mkdir(parents=True, exist_ok=True)
    server = relay_server(relay_config(directory, port, slack, telegram), port, patches=patches)
    result: dict[str, list[float]] = {"post": [], "slack": [], "telegram": []}
    async with running(server), aiohttp.ClientSession() as session:
        url = f"{server.url}{PATH}"
        for n in range(samples + 1):  # the first one warms connections up; not counted
            marker = f"e2e-{time.time_ns()}"
            body = render_body(spec, marker, conversation_id(n))
            started = time.monotonic()
            answered = await post(session, url, body)
            deadline = started + 10
            slack_at = telegram_at = None
            while time.monotonic() < deadline and (slack_at is None or telegram_at is None):
                await asyncio.sleep(0.001)
                slack_at = slack_at or arrival(slack.messages, marker)
                telegram_at = telegram_at or arrival(telegram.messages, marker)
            if slack_at is None or telegram_at is None:
                raise RuntimeError(f"event {n} not delivered within 10 s:\n{server.output()}")
            if n:
                result["post"].append(answered)
                result["slack"].append(slack_at - started)
                result["telegram"].append(telegram_at - started)
            await asyncio.sleep(max(0.0, started + SPACING - time.monotonic()))
    return result


async def measure_baseline(
    samples: int, slack: FakeSlack, telegram: FakeTelegram, directory: Path
) -> dict[str, list[float]]:
    spec = template_spec()
    port = free_port()
    result: dict[str, list[float]] = {"post": [], "slack": [], "telegram": []}
    slack_sender = SlackSender(
        token=fake_slack.BOT_TOKEN, channel=fake_slack.CHANNEL, api_url=slack.api_url
    )
    telegram_sender = TelegramSender(
        token=fake_telegram.TOKEN, chat_id=TELEGRAM_CHAT, api_url=telegram.api_url
    )
    try:
        async with running(bare_server(directory, port)), aiohttp.ClientSession() as session:
            for n in range(samples + 1):
                body = render_body(spec, f"base-{time.time_ns()}", conversation_id(n))
                answered = await post(session, f"http://127.0.0.1:{port}{PATH}", body)
                event = json.loads(body)
                started = time.monotonic()
                await slack_sender.send(render_slack(event)[0])
                slack_rtt = time.monotonic() - started
                started = time.monotonic()
                await telegram_sender.send(render_telegram(event)[0])
                telegram_rtt = time.monotonic() - started
                if n:
                    result["post"].append(answered)
                    result["slack"].append(answered + slack_rtt)
                    result["telegram"].append(answered + telegram_rtt)
                await asyncio.sleep(SPACING)  # stay within the fakes' rate limits
    finally:
        await slack_sender.close()
        await telegram_sender.close()
    return result


async def run(samples: int, patches: Sequence[str] = ()) -> dict[str, Any]:
    """With `patches`, the relay also runs with them, in the same run (an A/B)."""
    with tempfile.TemporaryDirectory(prefix="bench-e2e-") as temp:
        async with FakeSlack.running() as slack, FakeTelegram.running() as telegram:
            slack.enforce_rate_limit()
            telegram.enforce_rate_limits()
            telegram.add_chat(TELEGRAM_CHAT)
            baseline = await measure_baseline(samples, slack, telegram, Path(temp))
            relay = await measure_relay(samples, slack, telegram, Path(temp))
            other = (
                await measure_relay(samples, slack, telegram, Path(temp), patches)
                if patches
                else None
            )
            rate_limited = slack.count(429) + telegram.count(429)
    figures: dict[str, Any] = {}
    rows = []
    for leg in ("slack", "telegram"):
        relay_ms = [1000 * s for s in relay[leg]]
        base_ms = [1000 * s for s in baseline[leg]]
        figures[leg] = {
            "median_ms": median(relay_ms),
            "p90_ms": percentile(relay_ms, 90),
            "max_ms": max(relay_ms),
            "baseline_median_ms": median(base_ms),
            "ratio_to_baseline": median(relay_ms) / median(base_ms),
        }
        rows.append(
            [f"POST -> fake {leg}", figures[leg]["median_ms"], figures[leg]["p90_ms"],
             figures[leg]["max_ms"], figures[leg]["baseline_median_ms"],
             figures[leg]["ratio_to_baseline"]]
        )  # fmt: skip
        if other is not None:
            other_ms = [1000 * s for s in other[leg]]
            figures[leg]["patched_median_ms"] = median(other_ms)
            figures[leg]["shipped_vs_patched"] = median(relay_ms) / median(other_ms)
            rows.append(
                [f"  relay+{'+'.join(patches)}", median(other_ms), percentile(other_ms, 90),
                 max(other_ms), figures[leg]["baseline_median_ms"],
                 median(other_ms) / median(base_ms)]
            )  # fmt: skip
    post_ms = [1000 * s for s in relay["post"]]
    figures["post_200"] = {
        "median_ms": median(post_ms),
        "baseline_median_ms": median(1000 * s for s in baseline["post"]),
    }
    rows.append(
        ["POST -> 200 (stored)", figures["post_200"]["median_ms"], percentile(post_ms, 90),
         max(post_ms), figures["post_200"]["baseline_median_ms"],
         figures["post_200"]["median_ms"] / figures["post_200"]["baseline_median_ms"]]
    )  # fmt: skip
    text = table(
        f"2. End to end at idle: {samples} events, one every {SPACING:g} s; "
        f"target median < {TARGET_MEDIAN_MS:g} ms",
        ["path", "median ms", "p90 ms", "max ms", "baseline ms", "x baseline"],
        rows,
    )
    text += (
        "\nbaseline: POST to the bare handler + the relay's sender posting the rendered "
        f"message straight to the fake; 429s answered: {rate_limited}"
    )
    checks = {
        leg: {"median_ok": figures[leg]["median_ms"] < TARGET_MEDIAN_MS}
        for leg in ("slack", "telegram")
    }
    checks["no_429"] = rate_limited == 0
    return {
        "samples": samples,
        "figures": figures,
        "checks": checks,
        "raw_seconds": {"relay": relay, "baseline": baseline},
        "table": text,
    }


async def main(quick: bool = False, patches: Sequence[str] = ()) -> dict[str, Any]:
    """`patches`: also run the relay with these bench/patches.py patches, for an A/B."""
    result = await run(samples=5 if quick else 30, patches=patches)
    print(result["table"])
    save("e2e", result)
    return result
