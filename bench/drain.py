"""3. Drain a burst: events for one Slack channel (1 message/s) and one Telegram group
(20 messages/min), delivered while the fakes enforce those limits.

The relay runs as its own process with its documented default limits (no max_per_second)
and coalescing on (the default); the fakes (in this process) answer 429 beyond the
platforms' limits. All events are posted at once, spread over CONVERSATIONS conversations,
then the benchmark waits for the last delivery. Events are counted at the fakes by the
unique mark each carries in its text. The rate is events per minute from the first message
to the last, plus one message interval (the time the platform would take for one more):
events / (span + 1 / limit). The baseline is the platform's message limit itself: without
coalescing, one event a message, the relay cannot drain faster than that (1x).
"""

from __future__ import annotations

import asyncio
import re
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

TARGET_RATIO, TARGET_429_SHARE = 10.0, 0.0
CONVERSATIONS = 10
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
    # Each event's mark: `<destination>-<n>-<ns>`, in the order the messages hold them.
    marks = [int(m) for msg in messages for m in re.findall(rf"{name}-(\d+)-\d+", msg.text or "")]
    events = len(set(marks))
    span = messages[-1].at - messages[0].at if messages else float("nan")
    rate = events / (span + 1 / LIMITS[name]) if messages else float("nan")
    # Order: a conversation's events (n % CONVERSATIONS) arrive in increasing n.
    in_order = all(
        (seen := [n for n in dict.fromkeys(marks) if n % CONVERSATIONS == c]) == sorted(seen)
        for c in range(CONVERSATIONS)
    )
    most, period = WINDOWS[name]
    arrivals = [m.at for m in messages]
    spans = [b - a for a, b in zip(arrivals, arrivals[most:], strict=False)]
    return {
        "events": events,
        "expected": expected,
        "messages": len(messages),
        "span_s": span,
        "events_per_min": rate * 60,
        "limit_per_min": LIMITS[name] * 60,
        "ratio_to_limit": rate / LIMITS[name],
        "in_order": in_order,
        "duplicates": len(marks) - events,
        "calls": len(calls),
        "answered_429": limited,
        "share_429": limited / len(calls) if calls else 0.0,
        "window": f"{most}/{period:g}s",
        "tightest_window_s": min(spans, default=float("nan")),
        "arrivals": arrivals,
    }


def delivered(name: str, fake: Any) -> int:
    return len(
        {m for msg in fake.messages for m in re.findall(rf"{name}-(\d+)-\d+", msg.text or "")}
    )


async def run(slack_count: int, telegram_count: int, patches: Sequence[str] = ()) -> dict[str, Any]:
    counts = {"slack": slack_count, "telegram": telegram_count}
    # Without coalescing, one message per event: the time the platforms' limits would take.
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
                while (
                    delivered("slack", slack) < slack_count
                    or delivered("telegram", telegram) < telegram_count
                ):
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
            [name, f"{f['events']}/{f['expected']}", f["messages"], f["span_s"],
             f["events_per_min"], f["limit_per_min"], f["ratio_to_limit"],
             "yes" if f["in_order"] else "NO", f"{f['answered_429']}/{f['calls']}",
             f["tightest_window_s"]]
        )  # fmt: skip
        checks[name] = {
            "all_delivered": f["events"] == f["expected"],
            "rate_ok": f["ratio_to_limit"] >= TARGET_RATIO,
            "no_429": f["share_429"] <= TARGET_429_SHARE,
            "in_order": f["in_order"],
        }
    label = f", relay+{'+'.join(patches)}" if patches else ""
    text = table(
        f"3. Drain a burst of {slack_count} + {telegram_count} events over {CONVERSATIONS} "
        f"conversations ({elapsed:.0f} s{label}); target >= {TARGET_RATIO:g}x the message "
        "limit in events, no 429, order kept",
        [
            "destination",
            "events",
            "messages",
            "span s",
            "events/min",
            "limit/min",
            "x limit",
            "in order",
            "429/calls",
            "tightest s",
        ],
        rows,
    )
    return {"counts": counts, "figures": result, "checks": checks, "table": text}


async def main(quick: bool = False, patches: Sequence[str] = ()) -> dict[str, Any]:
    """`patches`: run the relay with these bench/patches.py patches (one variant)."""
    result = await run(*((40, 40) if quick else (200, 200)), patches=patches)
    print(result["table"])
    save("drain", result)
    return result
