"""3. Drain at the rate limit: a backlog for one Slack channel (1 message/s) and one
Telegram group (20 messages/min), delivered while the fakes enforce those limits.

The relay runs as its own process with its documented default limits (no max_per_second);
the fakes (in this process) answer 429 beyond the platforms' limits. All events are
posted at once, spread over a few conversations, then the benchmark waits for the last
delivery. The rate is measured at the fakes, from the first to the last accepted
message: (N - 1) / span. The baseline is the platform's limit itself.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import aiohttp

from bench.common import (
    PATH,
    free_port,
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
from tests.fakes import telegram as fake_telegram
from tests.fakes.slack import FakeSlack
from tests.fakes.telegram import FakeTelegram

TARGET_RATIO, TARGET_429_SHARE = 0.95, 0.01
CONVERSATIONS = 4
SEND_METHODS = {"chat.postMessage", "sendMessage", "sendmessage"}
LIMITS = {"slack": 1.0, "telegram": 20 / 60}  # messages per second
# The platforms' windows: at most `count` messages in any `period` seconds.
WINDOWS = {"slack": (1, 1.0), "telegram": (20, 60.0)}


def relay_config(directory: Path, port: int, slack: FakeSlack, telegram: FakeTelegram) -> Path:
    return write_config(
        directory,
        port,
        platform_destinations(slack.api_url, telegram.api_url, fake_telegram.CHAT_ID),
        r"""
- {name: to-slack, when: {message.externalId: {regex: '^wamid\.slack-'}}, to: [support-slack]}
- {name: to-telegram, when: {message.externalId: {regex: '^wamid\.telegram-'}}, to: [ops-telegram]}
""",
    )


async def post_all(url: str, counts: dict[str, int]) -> None:
    spec = template_spec()
    async with aiohttp.ClientSession() as session:
        for name, count in counts.items():
            for n in range(count):
                conversation = f"0b5e8a52-0000-4000-8000-{name[:1]}{n % CONVERSATIONS:011d}"
                body = render_body(spec, f"{name}-{n}-{time.time_ns()}", conversation)
                headers = {"x-oneroute-signature": sign(body)}
                async with session.post(url, data=body, headers=headers) as response:
                    if response.status != 200:
                        raise RuntimeError(f"POST answered {response.status}")


def figures(name: str, fake: Any, messages: list[Any], expected: int) -> dict[str, Any]:
    calls = [c for c in fake.calls if c.method in SEND_METHODS]
    limited = sum(1 for c in calls if c.status == 429)
    span = messages[-1].at - messages[0].at if len(messages) > 1 else float("nan")
    # The tightest window: the shortest time in which count + 1 messages arrived; under
    # `period` means the platform's window was overrun (by arrival time, as it counts).
    most, period = WINDOWS[name]
    arrivals = [m.at for m in messages]
    spans = [b - a for a, b in zip(arrivals, arrivals[most:], strict=False)]
    rate = (len(messages) - 1) / span if len(messages) > 1 else float("nan")
    return {
        "messages": len(messages),
        "expected": expected,
        "span_s": span,
        "rate_per_s": rate,
        "limit_per_s": LIMITS[name],
        "ratio_to_limit": rate / LIMITS[name],
        "calls": len(calls),
        "answered_429": limited,
        "share_429": limited / len(calls) if calls else 0.0,
        "window": f"{most}/{period:g}s",
        "tightest_window_s": min(spans, default=float("nan")),
        "arrivals": arrivals,
    }


async def run(slack_count: int, telegram_count: int, patches: Sequence[str] = ()) -> dict[str, Any]:
    counts = {"slack": slack_count, "telegram": telegram_count}
    expected = max(slack_count / LIMITS["slack"], telegram_count / LIMITS["telegram"])
    with tempfile.TemporaryDirectory(prefix="bench-drain-") as temp:
        async with FakeSlack.running() as slack, FakeTelegram.running() as telegram:
            slack.enforce_rate_limit()
            telegram.enforce_rate_limits()
            port = free_port()
            config = relay_config(Path(temp), port, slack, telegram)
            server = relay_server(config, port, patches=patches)
            async with running(server):
                started = time.monotonic()
                await post_all(f"{server.url}{PATH}", counts)
                deadline = started + expected * 1.5 + 30
                while len(slack.messages) < slack_count or len(telegram.messages) < telegram_count:
                    if time.monotonic() > deadline:
                        break  # reported as not all delivered
                    await asyncio.sleep(0.2)
                elapsed = time.monotonic() - started
            result = {
                "slack": figures("slack", slack, list(slack.messages), slack_count),
                "telegram": figures("telegram", telegram, list(telegram.messages), telegram_count),
            }
    rows = []
    checks: dict[str, Any] = {}
    for name, f in result.items():
        rows.append(
            [name, f"{f['messages']}/{f['expected']}", f["span_s"], f["rate_per_s"] * 60,
             f["limit_per_s"] * 60, f["ratio_to_limit"], f"{f['answered_429']}/{f['calls']}",
             f["window"], f["tightest_window_s"]]
        )  # fmt: skip
        checks[name] = {
            "all_delivered": f["messages"] == f["expected"],
            "rate_ok": f["ratio_to_limit"] >= TARGET_RATIO,
            "few_429": f["share_429"] <= TARGET_429_SHARE,
        }
    label = f", relay+{'+'.join(patches)}" if patches else ""
    text = table(
        f"3. Drain at the rate limit ({elapsed:.0f} s{label}); "
        f"target rate >= {TARGET_RATIO}x limit, <= {TARGET_429_SHARE:.0%} answered 429",
        [
            "destination",
            "delivered",
            "span s",
            "per min",
            "limit/min",
            "x limit",
            "429/calls",
            "window",
            "tightest s",
        ],
        rows,
    )
    return {"counts": counts, "figures": result, "checks": checks, "table": text}


async def main(quick: bool = False, patches: Sequence[str] = ()) -> dict[str, Any]:
    """`patches`: run the relay with these bench/patches.py patches (one variant)."""
    result = await run(*((10, 6) if quick else (60, 40)), patches=patches)
    print(result["table"])
    save("drain", result)
    return result
