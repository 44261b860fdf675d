"""4. Memory and store size: the relay's RSS at idle and after 100k events, and the SQLite
files per 1k events.

"After 100k events" means accepted and delivered: 100k unique signed events go through the
webhook endpoint (bench.loadgen, 32 connections, its own process), each routed to one
Slack destination; its lane delivers them through slack-sdk to a fake Slack in this
process, with max_per_second raised to 1000 so that the drain takes minutes, not a day.
RSS (VmRSS from /proc/<pid>/status) is read at idle after start, when the last event has
been accepted, and once the last delivery has been made and the relay is idle again;
VmHWM is the peak. The baseline is the bare aiohttp handler's RSS at idle, read in the
same run. Store size: relay.db + -wal (+ -shm) once all is delivered, before any prune
(delivered events are kept for `retention`, 7 days by default).
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import (
    bare_server,
    free_port,
    relay_server,
    running,
    save,
    store_files,
    table,
    write_config,
)
from bench.load import run_count
from tests.fakes import slack as fake_slack
from tests.fakes.slack import FakeSlack

TARGET_RSS_MB = 150.0
CONNECTIONS = 32


def relay_config(directory: Path, port: int, slack: FakeSlack) -> Path:
    return write_config(
        directory,
        port,
        f"""
support-slack:
  type: slack
  token: {fake_slack.BOT_TOKEN}
  channel: {fake_slack.CHANNEL}
  api_url: {slack.api_url}
  max_per_second: 1000
""",
        "- {name: everything, to: [support-slack]}",
    )


class Counted:
    """Counts what the fake Slack accepted and forgets it, so this process stays small."""

    def __init__(self, slack: FakeSlack) -> None:
        self.slack = slack
        self.delivered = 0
        self.refused = 0

    def collect(self) -> int:
        self.delivered += len(self.slack.messages)
        self.refused += sum(1 for call in self.slack.calls if call.status != 200)
        self.slack.messages.clear()
        self.slack.calls.clear()
        return self.delivered


def mb(kb: int) -> float:
    return kb / 1024


async def run(events: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-memory-") as temp:
        directory = Path(temp)
        port = free_port()
        async with running(bare_server(directory, port)) as bare:
            await asyncio.sleep(1.0)
            bare_idle = bare.status()
        async with FakeSlack.running() as slack:
            counted = Counted(slack)
            port = free_port()
            server = relay_server(relay_config(directory, port, slack), port)
            async with running(server) as relay:
                await asyncio.sleep(2.0)
                idle = relay.status()
                started = time.monotonic()
                load = asyncio.create_task(run_count(port, events, CONNECTIONS, "memory"))
                samples: list[tuple[float, int, int]] = []  # (s, delivered, VmRSS kB)
                while not load.done():
                    await asyncio.sleep(1.0)
                    samples.append((time.monotonic() - started, counted.collect(),
                                    relay.status()["VmRSS"]))  # fmt: skip
                ingest = load.result()
                accepted_at = time.monotonic() - started
                after_ingest = relay.status()
                deadline = time.monotonic() + max(600.0, events / 50)
                while counted.collect() < ingest["requests"] and time.monotonic() < deadline:
                    await asyncio.sleep(1.0)
                    samples.append((time.monotonic() - started, counted.delivered,
                                    relay.status()["VmRSS"]))  # fmt: skip
                delivered_at = time.monotonic() - started
                await asyncio.sleep(3.0)  # idle again: lanes asleep, nothing in flight
                after = relay.status()
                files = store_files(directory)
    store_bytes = files["db"] + files["db-wal"]
    result = {
        "events": events,
        "accepted": ingest["statuses"].get("200", 0),
        "non_200": ingest["non_200"],
        "delivered": counted.delivered,
        "refused_by_fake": counted.refused,
        "ingest_seconds": accepted_at,
        "ingest_rps": ingest["rps"],
        "drain_seconds": delivered_at,
        "rss_mb": {
            "bare_idle": mb(bare_idle["VmRSS"]),
            "idle": mb(idle["VmRSS"]),
            "after_ingest": mb(after_ingest["VmRSS"]),
            "after_delivery": mb(after["VmRSS"]),
            "peak": mb(after["VmHWM"]),
        },
        "store_bytes": files,
        "store_kb_per_1k_events": store_bytes / 1024 / (events / 1000),
        "samples": samples,
    }
    rss = result["rss_mb"]
    rows = [
        ["bare handler, idle (baseline)", rss["bare_idle"], 1.0],
        ["relay, idle after start", rss["idle"], rss["idle"] / rss["bare_idle"]],
        [f"relay, {events:,} accepted", rss["after_ingest"],
         rss["after_ingest"] / rss["bare_idle"]],
        [f"relay, {events:,} delivered, idle", rss["after_delivery"],
         rss["after_delivery"] / rss["bare_idle"]],
        ["relay, peak (VmHWM)", rss["peak"], rss["peak"] / rss["bare_idle"]],
    ]  # fmt: skip
    text = table(
        f"4. Memory: {events:,} events accepted in {accepted_at:.0f} s and delivered in "
        f"{delivered_at:.0f} s; target < {TARGET_RSS_MB:g} MB after",
        ["process, moment", "RSS MB", "x bare idle"],
        rows,
    )
    text += (
        f"\nstore: relay.db {files['db'] / 2**20:.1f} MB + wal {files['db-wal'] / 2**20:.1f} MB"
        f" = {result['store_kb_per_1k_events']:.0f} kB per 1k events"
        f" ({result['delivered']:,}/{result['accepted']:,} delivered)"
    )
    result["checks"] = {
        "rss_ok": rss["after_delivery"] < TARGET_RSS_MB and rss["peak"] < TARGET_RSS_MB,
        "all_accepted": result["accepted"] == events and result["non_200"] == 0,
        "all_delivered": result["delivered"] >= result["accepted"],
    }
    result["table"] = text
    return result


async def main(quick: bool = False, events: int | None = None) -> dict[str, Any]:
    result = await run(events or (10_000 if quick else 100_000))
    print(result["table"])
    save("memory", result)
    return result
