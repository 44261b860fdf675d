"""1. Durable ingest: the relay's webhook endpoint against a bare aiohttp handler.

Both run as their own process, and so does the load generator (wrk, else bench.loadgen):
32 keep-alive connections, each sending unique signed events back to back. The relay
checks the signature, routes, stores the event and its delivery row in SQLite (WAL,
synchronous=FULL, group commit) and answers 200; its lane delivers to a fake Slack (in
this process) at Slack's real pace of 1/s, as during a burst in production.

A round runs, for each event loop (asyncio's default, then uvloop), the bare handler and
then each relay variant (the shipped relay, and the relay with each --patch applied).
The figures are medians over the rounds; ratios compare servers on the same loop.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.common import (
    Server,
    bare_server,
    free_port,
    machine_busy,
    median,
    percentile,
    relay_server,
    running,
    save,
    table,
    tree_cpu_seconds,
    write_config,
)
from bench.load import pick, run_load
from tests.fakes import slack as fake_slack
from tests.fakes.slack import FakeSlack

CONNECTIONS = 32
TARGET_RATIO, TARGET_P99_MS = 0.5, 25.0


def relay_config(directory: Path, port: int, slack: FakeSlack, workers: int = 0) -> Path:
    directory.mkdir(exist_ok=True)
    return write_config(
        directory,
        port,
        f"""
support-slack:
  type: slack
  token: {fake_slack.BOT_TOKEN}
  channel: {fake_slack.CHANNEL}
  api_url: {slack.api_url}
""",
        "- {name: everything, to: [support-slack]}",
        workers=workers,
    )


async def background_busy(seconds: float = 0.5) -> float:
    """How busy the machine is with nothing of ours running (other jobs skew the figures)."""
    before = machine_busy()
    await asyncio.sleep(seconds)
    after = machine_busy()
    return 100 * (after[0] - before[0]) / max(1, after[1] - before[1])


async def measure(
    server: Server, seconds: float, warmup: float, generator: str, tag: str
) -> dict[str, Any]:
    prefix = f"{tag}-{time.time_ns()}"
    warm = await run_load(server.port, warmup, CONNECTIONS, prefix + "-warm", generator)
    background = await background_busy()
    before, cpu_before, busy_before = server.status(), tree_cpu_seconds(server.pid), machine_busy()
    result = await run_load(server.port, seconds, CONNECTIONS, prefix, generator)
    busy_after = machine_busy()
    result["warmup_requests"] = warm["requests"]
    result["background_busy_pct"] = background
    # CPU of the server process and its children (ingest workers), in cores; the machine's, %.
    result["server_cores"] = (tree_cpu_seconds(server.pid) - cpu_before) / result["seconds"]
    result["machine_busy_pct"] = (
        100 * (busy_after[0] - busy_before[0]) / max(1, busy_after[1] - busy_before[1])
    )
    result["rss_kb_before"], result["rss_kb_after"] = before["VmRSS"], server.status()["VmRSS"]
    return result


def batch_stats(path: Path) -> dict[str, Any] | None:
    """Group-commit batch sizes and durations, when the batch-stats patch recorded them."""
    if not path.exists():
        return None
    stats = json.loads(path.read_text())
    sizes = {int(k): v for k, v in stats["sizes"].items()}
    batches = sum(sizes.values())
    rows = sum(k * v for k, v in sizes.items())
    return {
        "batches": batches,
        "mean_size": rows / batches if batches else 0.0,
        "max_size": max(sizes, default=0),
        "sizes": dict(sorted(sizes.items())),
        "mean_batch_ms": 1000 * sum(stats["seconds"]) / max(1, len(stats["seconds"])),
        "p99_batch_ms": 1000 * percentile(stats["seconds"], 99),
        "mean_batch_cpu_ms": 1000 * sum(stats["cpu"]) / max(1, len(stats["cpu"])),
        # every transaction's COMMIT, most of them group commits: the fsync's share
        "mean_commit_ms": 1000 * sum(stats["commits"]) / max(1, len(stats["commits"])),
    }


def stored_events(db: Path) -> int:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as connection:
        return int(connection.execute("SELECT count(*) FROM events").fetchone()[0])


async def run_relay(
    directory: Path,
    slack: FakeSlack,
    flags: Sequence[str],
    patches: Sequence[str],
    seconds: float,
    warmup: float,
    generator: str,
) -> dict[str, Any]:
    """`patches` may hold `workers=N`: the relay with server.workers N (not a patch)."""
    port = free_port()
    workers = [int(p.removeprefix("workers=")) for p in patches if p.startswith("workers=")]
    patches = [p for p in patches if not p.startswith("workers=")]
    config = relay_config(directory, port, slack, workers=max(workers, default=0))
    server = relay_server(config, port, *flags, patches=patches)
    async with running(server) as relay:
        result = await measure(relay, seconds, warmup, generator, directory.name)
    result["exit_code"] = server.process.returncode if server.process else None
    # Every answered request is a distinct stored event (none was taken for a duplicate);
    # requests still in flight when the generator stopped may add up to one per connection.
    stored = stored_events(directory / "relay.db")
    answered = result["requests"] + result["warmup_requests"]
    result["stored_events"] = stored
    result["all_stored"] = answered <= stored <= answered + 2 * CONNECTIONS
    result["batches"] = batch_stats(config.with_suffix(".stats.json"))
    result["log_tail"] = server.output()[-800:] if result["non_200"] else ""
    return result


async def run(
    seconds: float = 10.0,
    warmup: float = 2.0,
    rounds: int = 3,
    generator: str = "auto",
    loops: Sequence[str] = ("asyncio", "uvloop"),
    variants: Sequence[Sequence[str]] = ((),),
    batch_sizes: bool = False,
) -> dict[str, Any]:
    """`variants`: patch lists to run the relay with; () is the relay as shipped."""
    generator = pick(generator)
    runs: dict[str, list[dict[str, Any]]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as temp:
        async with FakeSlack.running() as slack:
            for round_ in range(rounds):
                for loop in loops:
                    flags = ["--uvloop"] if loop == "uvloop" else []
                    port = free_port()
                    async with running(bare_server(Path(temp), port, *flags)) as bare:
                        result = await measure(bare, seconds, warmup, generator, "bare")
                    runs.setdefault(f"bare/{loop}", []).append(result)
                    for number, patches in enumerate(variants):
                        name = "+".join(["relay", *patches]) + f"/{loop}"
                        patches = [*patches, "batch-stats"] if batch_sizes else list(patches)
                        directory = Path(temp) / f"relay-{loop}-{round_}-{number}"
                        result = await run_relay(
                            directory, slack, flags, patches, seconds, warmup, generator
                        )
                        runs.setdefault(name, []).append(result)
    return summarise(runs, generator, seconds, rounds)


def summarise(
    runs: dict[str, list[dict[str, Any]]], generator: str, seconds: float, rounds: int
) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    rows = []
    for name, results in runs.items():
        loop = name.rsplit("/", 1)[1]
        figures = {
            "rps": median(r["rps"] for r in results),
            "p50_ms": median(r["latency_ms"]["p50"] for r in results),
            "p99_ms": median(r["latency_ms"]["p99"] for r in results),
            "non_200": sum(r["non_200"] for r in results),
            "all_stored": all(r.get("all_stored", True) for r in results),
            "server_cores": median(r["server_cores"] for r in results),
            # CPU time the server process spent per answered request, all threads
            "cpu_us_per_request": median(1e6 * r["server_cores"] / r["rps"] for r in results),
            "background_busy_pct": max(r["background_busy_pct"] for r in results),
            "rounds_rps": [round(r["rps"]) for r in results],
        }
        bare = summary.get(f"bare/{loop}")
        figures["ratio_to_bare"] = figures["rps"] / bare["rps"] if bare else 1.0
        batches = [r["batches"] for r in results if r.get("batches")]
        if batches:
            figures["batch_mean_size"] = median(b["mean_size"] for b in batches)
            figures["batch_mean_ms"] = median(b["mean_batch_ms"] for b in batches)
            figures["commit_mean_ms"] = median(b["mean_commit_ms"] for b in batches)
            figures["batch_cpu_ms"] = median(b["mean_batch_cpu_ms"] for b in batches)
        summary[name] = figures
        rows.append(
            [name, figures["rps"], figures["ratio_to_bare"], figures["p50_ms"],
             figures["p99_ms"], figures["server_cores"], figures["cpu_us_per_request"],
             figures["non_200"],
             figures["all_stored"], " ".join(map(str, figures["rounds_rps"]))]
        )  # fmt: skip
    checks = {
        name: {
            "ratio_ok": figures["ratio_to_bare"] >= TARGET_RATIO,
            "p99_ok": figures["p99_ms"] < TARGET_P99_MS,
            "all_200_and_stored": figures["non_200"] == 0 and figures["all_stored"],
        }
        for name, figures in summary.items()
        if name.startswith("relay")
    }
    title = (
        f"1. Durable ingest: {CONNECTIONS} connections, {generator}, {seconds:g} s, "
        f"median of {rounds} round(s); target >= {TARGET_RATIO}x bare, p99 < {TARGET_P99_MS:g} ms"
    )
    text = table(
        title,
        ["server/loop", "req/s", "x bare", "p50 ms", "p99 ms", "cores", "CPU us/req", "non-200",
         "stored",
         "each round req/s"],
        rows,
    )  # fmt: skip
    notes = []
    gains: dict[str, float] = {}
    if "relay/asyncio" in summary and "relay/uvloop" in summary:
        gains["uvloop"] = summary["relay/uvloop"]["rps"] / summary["relay/asyncio"]["rps"]
        notes.append(f"relay on uvloop vs asyncio: {gains['uvloop']:.2f}x req/s")
    for name, figures in summary.items():
        base = summary.get("relay/" + name.rsplit("/", 1)[1])
        if "+" in name and base:
            figures["gain_vs_shipped"] = gains[name] = figures["rps"] / base["rps"]
            cpu = figures["cpu_us_per_request"] / base["cpu_us_per_request"]
            notes.append(
                f"{name} vs relay as shipped: {gains[name]:.2f}x req/s, {cpu:.2f}x CPU per request"
            )
        if "batch_mean_size" in figures:
            notes.append(
                f"{name}: group commit {figures['batch_mean_size']:.1f} events/batch, "
                f"{figures['batch_mean_ms']:.2f} ms/batch in the store thread (on CPU "
                f"{figures['batch_cpu_ms']:.2f} ms; COMMIT {figures['commit_mean_ms']:.2f} ms)"
            )
    busy = max(f["background_busy_pct"] for f in summary.values())
    if busy > 10:
        notes.append(f"warning: the machine was {busy:.0f}% busy before a run (other jobs)")
    text += "".join(f"\n{note}" for note in notes)
    return {"summary": summary, "gains": gains, "checks": checks, "runs": runs, "table": text}


async def main(
    quick: bool = False,
    generator: str = "auto",
    patches: Sequence[str] = (),
    loops: Sequence[str] = ("asyncio", "uvloop"),
    batch_sizes: bool = False,
    rounds: int | None = None,
    seconds: float | None = None,
) -> dict[str, Any]:
    settings: dict[str, Any] = dict(seconds=5.0, warmup=1.0, rounds=1) if quick else {}
    if rounds is not None:
        settings["rounds"] = rounds
    if seconds is not None:
        settings["seconds"] = seconds
    # Each --patch value is one variant; "a+b" applies two patches together.
    variants = [(), *(tuple(p.split("+")) for p in patches)]
    result = await run(
        generator=generator, loops=loops, variants=variants, batch_sizes=batch_sizes, **settings
    )
    print(result["table"])
    save("ingest", result)
    return result
