"""The floor under the ingest target: what any durable relay must do, measured on this machine.

`bench ingest` compares the relay with a bare aiohttp handler. This asks how close to that
ceiling a relay could come at all. It runs, in one invocation and with the same load as
`bench ingest` (wrk or bench.loadgen, 32 connections, unique signed events), the bare
handler and then bench/floor_server.py at these stages, each in one process and in two
processes sharing the port (SO_REUSEPORT; a database file each, so that they never wait for
each other, unless the stage says otherwise):

- verify:   signature check and JSON parse (the relay's own functions), then answer;
- durable:  and the relay's SQLite group commit (event, duplicate check, delivery row;
            synchronous=FULL as shipped), inline on the event loop: no thread hand-off;
- durable-async: the same with the fsync on a thread, the loop going on meanwhile;
- shared-async: durable-async with every process writing one file (a lock file around
                each batch's transaction), as the processes of one relay must;
- funnel:   verify in each process, then hand the event over the relay's ingest channel
            to one writer process (its CPU counted too) that stores it as `durable`
            does: a relay with ingest workers, stripped to its unavoidable parts;
- unsynced: the same with synchronous=OFF: no fsync, so not durable (for comparison).

None of the stages routes, logs, counts metrics or delivers: whatever they reach, the
relay cannot exceed without giving up durability or the duplicate check.

Then, in the same round, the relay itself as `bench ingest` runs it (asyncio's loop, one
Slack destination paced at 1/s), and with each --patch (e.g. `src=DIR`, another checkout's
relay: an A/B). The table ends with the three ratios: relay / bare, floor / bare (the best
durable floor) and relay / floor, whose target is RELAY_TARGET; then the relay against the
best floor that keeps one store for every request (durable x1, shared-async, funnel), as
any relay must (BENCHMARKS.md: "A funnel floor").

    python -m bench floor [--quick] [--seconds S] [--loadgen wrk|python] [--stage NAME]
        [--patch NAME[+NAME]]
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import aiohttp

from bench.common import (
    ROOT,
    Server,
    bare_server,
    cpu_seconds,
    free_port,
    median,
    save,
    table,
)
from bench.floor_server import STAGES
from bench.ingest import CONNECTIONS, TARGET_RATIO, run_relay, stored_events
from bench.load import pick, run_load
from tests.fakes.slack import FakeSlack

PROCESSES = (1, 2)
RELAY_TARGET = 0.8  # issue 12: the relay at 0.8x the best durable floor, in one run


def floor_server(directory: Path, port: int, stage: str, number: int) -> Server:
    database = "floor.db" if stage == "shared-async" else f"floor-{number}.db"
    store = (
        ["--writer", str(directory / "writer.sock")]  # the funnel's writer has the file
        if stage == "funnel"
        else ["--db", str(directory / database)]
    )
    return Server(
        [sys.executable, "-m", "bench.floor_server", "--port", str(port), "--stage", stage,
         *store],
        port,
        directory / f"floor-{number}.log",
        env={"PYTHONPATH": str(ROOT)},
    )  # fmt: skip


def funnel_writer(directory: Path) -> Server:
    """The funnel stage's writer process (its own port, for /healthz only)."""
    port = free_port()
    return Server(
        [sys.executable, "-m", "bench.floor_server", "--port", str(port),
         "--writer", str(directory / "writer.sock"), "--db", str(directory / "floor.db")],
        port,
        directory / "writer.log",
        env={"PYTHONPATH": str(ROOT)},
    )  # fmt: skip


@contextlib.asynccontextmanager
async def all_running(servers: list[Server], within: float = 30.0) -> AsyncIterator[None]:
    """Start every server on the shared port; with several, return once each has answered
    a /healthz with its pid (the first answers for all until the others listen)."""
    try:
        for server in servers:
            await server.start()
        pending = {str(server.pid) for server in servers} if len(servers) > 1 else set()
        deadline = time.monotonic() + within
        while pending and time.monotonic() < deadline:
            # A new connection each time, so the kernel spreads them over the processes.
            async with (
                aiohttp.ClientSession() as session,
                session.get(f"{servers[0].url}/healthz") as response,
            ):
                pending.discard(await response.text())
        if pending:
            raise RuntimeError(f"processes {sorted(pending)} never answered on the shared port")
        yield
    finally:
        for server in servers:
            await server.stop()
            server.kill()


async def measure(
    servers: list[Server], seconds: float, warmup: float, generator: str, tag: str
) -> dict[str, Any]:
    prefix = f"{tag}-{time.time_ns()}"
    warm = await run_load(servers[0].port, warmup, CONNECTIONS, prefix + "-warm", generator)
    cpu_before = sum(cpu_seconds(server.pid) for server in servers)
    result = await run_load(servers[0].port, seconds, CONNECTIONS, prefix, generator)
    result["server_cores"] = (
        sum(cpu_seconds(server.pid) for server in servers) - cpu_before
    ) / result["seconds"]
    result["warmup_requests"] = warm["requests"]
    return result


async def run(
    seconds: float,
    warmup: float,
    rounds: int,
    generator: str,
    stages: Sequence[str] = STAGES,
    variants: Sequence[Sequence[str]] = ((),),
) -> dict[str, Any]:
    """`variants`: patch lists to run the relay with; () is the relay as shipped."""
    generator = pick(generator)
    runs: dict[str, list[dict[str, Any]]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-floor-") as temp:
        async with FakeSlack.running() as slack:
            for round_ in range(rounds):
                port = free_port()
                bare = bare_server(Path(temp), port)
                async with all_running([bare]):
                    runs.setdefault("bare", []).append(
                        await measure([bare], seconds, warmup, generator, "bare")
                    )
                for stage in stages:
                    for processes in PROCESSES:
                        name = f"{stage} x{processes}"
                        directory = Path(temp) / f"{stage}-{processes}-{round_}"
                        directory.mkdir()
                        port = free_port()
                        servers = [
                            floor_server(directory, port, stage, n) for n in range(processes)
                        ]
                        writers = [funnel_writer(directory)] if stage == "funnel" else []
                        async with all_running(writers), all_running(servers):
                            result = await measure(
                                [*servers, *writers], seconds, warmup, generator, name
                            )
                        if stage != "verify":  # every answered event is in a database
                            answered = result["requests"] + result["warmup_requests"]
                            stored = sum(map(stored_events, directory.glob("floor*.db")))
                            result["all_stored"] = stored >= answered
                        runs.setdefault(name, []).append(result)
                for number, patches in enumerate(variants):
                    directory = Path(temp) / f"relay-{round_}-{number}"
                    result = await run_relay(
                        directory, slack, [], patches, seconds, warmup, generator
                    )
                    runs.setdefault("+".join(["relay", *patches]), []).append(result)
    return summarise(runs, generator, seconds, rounds)


def summarise(
    runs: dict[str, list[dict[str, Any]]], generator: str, seconds: float, rounds: int
) -> dict[str, Any]:
    bare_rps = median(r["rps"] for r in runs["bare"])
    summary: dict[str, Any] = {}
    rows = []
    for name, results in runs.items():
        figures = {
            "rps": median(r["rps"] for r in results),
            "p99_ms": median(r["latency_ms"]["p99"] for r in results),
            "server_cores": median(r["server_cores"] for r in results),
            "cpu_us_per_request": median(1e6 * r["server_cores"] / r["rps"] for r in results),
            "non_200": sum(r["non_200"] for r in results),
            "all_stored": all(r.get("all_stored", True) for r in results),
        }
        figures["ratio_to_bare"] = figures["rps"] / bare_rps
        summary[name] = figures
        rows.append(
            [name, figures["rps"], figures["ratio_to_bare"], figures["p99_ms"],
             figures["server_cores"], figures["cpu_us_per_request"], figures["non_200"],
             "yes" if figures["all_stored"] else "NO"]
        )  # fmt: skip
    title = (
        f"Floor: what any durable relay must do; {CONNECTIONS} connections, {generator}, "
        f"{seconds:g} s, median of {rounds} round(s); the ingest target is {TARGET_RATIO}x bare"
    )
    text = table(
        title,
        ["server", "req/s", "x bare", "p99 ms", "cores", "CPU us/req", "non-200", "stored"],
        rows,
    )
    durable = [name for name in summary if name.startswith("durable")]
    checks: dict[str, Any] = {
        "all_200_and_stored": all(
            f["non_200"] == 0 and (f["all_stored"] or "no-store" in name)  # stores nothing
            for name, f in summary.items()
        )
    }
    if not durable:  # only --stage verify: no floor to compare the relay with
        return {"summary": summary, "checks": checks, "runs": runs, "table": text}
    best_durable = max(durable, key=lambda name: summary[name]["rps"])
    # The arrangements a relay can have: one store for every request, so that a duplicate
    # is caught and a conversation kept in order whichever process takes the request.
    one_store = [
        name for name in summary
        if name.startswith(("shared-async", "funnel")) or name in ("durable x1", "durable-async x1")
    ]  # fmt: skip
    best_one_store = max(one_store, key=lambda name: summary[name]["rps"], default=None)
    text += (
        f"\nbest durable floor: {best_durable}, {summary[best_durable]['ratio_to_bare']:.2f}x "
        f"bare (the ingest target is {TARGET_RATIO}x)"
    )
    floor = summary[best_durable]
    for name, figures in summary.items():
        if not name.startswith("relay"):
            continue
        figures["ratio_to_floor"] = figures["rps"] / floor["rps"]
        figures["cpu_to_floor"] = figures["cpu_us_per_request"] / floor["cpu_us_per_request"]
        text += (
            f"\n{name}: relay / bare {figures['ratio_to_bare']:.2f}x, floor / bare "
            f"{floor['ratio_to_bare']:.2f}x, relay / floor {figures['ratio_to_floor']:.2f}x "
            f"(target >= {RELAY_TARGET}x); CPU {figures['cpu_us_per_request']:.0f} us/req, "
            f"{figures['cpu_to_floor']:.2f}x the floor's {floor['cpu_us_per_request']:.0f}"
        )
        checks[f"{name} at {RELAY_TARGET}x the floor"] = figures["ratio_to_floor"] >= RELAY_TARGET
        if best_one_store is not None:
            figures["one_store_floor"] = best_one_store
            figures["ratio_to_one_store_floor"] = figures["rps"] / summary[best_one_store]["rps"]
            text += (
                f"\n{' ' * len(name)}  relay / the best one-store floor ({best_one_store}) "
                f"{figures['ratio_to_one_store_floor']:.2f}x"
            )
    base = summary.get("relay")
    for name, figures in summary.items():
        if name.startswith("relay+") and base:
            text += (
                f"\n{name} vs relay: {figures['rps'] / base['rps']:.2f}x req/s, "
                f"{figures['cpu_us_per_request'] / base['cpu_us_per_request']:.2f}x CPU per request"
            )
    busy = max(
        (r.get("background_busy_pct", 0.0) for results in runs.values() for r in results),
        default=0.0,
    )
    if busy > 10:
        text += f"\nwarning: the machine was {busy:.0f}% busy before a relay run (other jobs)"
    return {"summary": summary, "checks": checks, "runs": runs, "table": text}


async def main(
    quick: bool = False,
    generator: str = "auto",
    rounds: int | None = None,
    seconds: float | None = None,
    stages: Sequence[str] = (),
    patches: Sequence[str] = (),
) -> dict[str, Any]:
    """`stages`: floor stages to run (default all); `patches`: each value one more relay
    variant ("a+b" applies two patches together)."""
    result = await run(
        seconds=seconds or (5.0 if quick else 10.0),
        warmup=1.0 if quick else 2.0,
        rounds=rounds or (1 if quick else 3),
        generator=generator,
        stages=stages or STAGES,
        variants=[(), *(tuple(p.split("+")) for p in patches)],
    )
    print(result["table"])
    save("floor", result)
    return result


if __name__ == "__main__":  # pragma: no cover - use python -m bench floor
    asyncio.run(main())
