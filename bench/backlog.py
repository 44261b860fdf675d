"""Claims and a large backlog: does finding the next due deliveries cost more when many wait?

For each engine (SQLite as shipped, synchronous=FULL; PostgreSQL on $RELAY_TEST_POSTGRES or
127.0.0.1:5432), one destination gets a backlog of BACKLOGS pending deliveries over
CONVERSATIONS conversations, stored through the store's own group-commit batch, as after an
outage: the heads of half of the conversations were tried and wait for their retry (an
hour away), the rest are due. Then, in
the store's API, as a lane with a console-like sender (sending costs nothing: what is
measured is the store):

- drain, one event a message (a threaded destination, or `coalesce: false`): claim one head,
  mark it sent, again; messages per second. Both backlogs are measured in ROUNDS turns of
  SECONDS / ROUNDS each (or an eighth of the backlog over all turns, so that the small one
  stays near its size): the machine's drift falls on both alike; the medians count. The
  ratio of the rate at the large backlog to the rate at the small one is the figure
  (target >= TARGET_RATIO).
- drain, coalescing (claim_limit 16 heads, run 32: the lanes' defaults): events per second.
  Not comparable across backlogs (a small backlog has one row per conversation, so fewer
  rows a claim): shown for scale only.
- ingest on the large backlog, in ROUNDS turns too: accepts at ACCEPT_RATE/s, each through
  group commit, with no lane, with a lane paced to PACED_LANE messages a second, and with a
  lane claiming and recording as fast as it can (a console destination), and with the paced
  lane while what a /metrics scrape reads (the backlog, the dead letters' count) is read
  every SCRAPE_EVERY s, the lane on the same event loop (the relay's shape: on SQLite its
  writes share the store's writing thread); p99 latency of an accept, pooled over the turns
  (target below TARGET_P99_MS while a lane drains).

Each variant runs in a process of its own. `before`: the same measurements with the store
of BEFORE (the commit before heads), its `relay` package exported from git into a temp
directory: an A/B in one run. Figures are ratios within one run; the machine is shared.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import time
from io import BytesIO
from pathlib import Path
from typing import Any

from bench.common import ROOT, median, percentile, save, table

BEFORE = "9ae1572"  # main just before the heads store (issue 12): the old claim, for the A/B
BACKLOGS = (1_000, 100_000)
CONVERSATIONS = 2_000
SECONDS = 8.0
ACCEPT_RATE = 200.0  # accepts per second while draining
PACED_LANE = 10.0  # messages per second of a paced lane (ten Slack channels' worth)
SCRAPE_EVERY = 1.0  # seconds between /metrics-like reads of the backlog (Prometheus: 15-60)
MESSAGE_EVENTS = 25  # events a lane's message carries in the ingest measurement
LANE_BEHIND = 96  # relay/lanes.py LaneSettings.behind
ROUNDS = 5
TARGET_RATIO, TARGET_P99_MS = 0.8, 25.0
FILL_BATCH = 2_000
T0 = 1_700_000_000.0
NOW = T0 + 10 * 86400  # every row is due
LEASE, OWNER = 120.0, "bench"


# --- in the worker process ----------------------------------------------------------------------


async def worker(engine: str, seconds: float, backlogs: list[int]) -> dict[str, Any]:
    """The measurements for one engine with whichever `relay` package is on sys.path."""
    from relay.store.base import Incoming
    from relay.store.sql import Statement

    def incoming(n: int, conversation: str) -> Incoming:
        body = b'{"event":"newMessage","n":%d,"at":%d}' % (n, time.time_ns())
        return Incoming(body, "newMessage", conversation, ("console",), T0 + n * 1e-3)

    async def filled(pending: int) -> tuple[Any, Any]:
        store, cleanup = await open_store(engine)
        started = time.monotonic()
        for start in range(0, pending, FILL_BATCH):
            items = [
                incoming(n, f"c{n % CONVERSATIONS}")
                for n in range(start, min(pending, start + FILL_BATCH))
            ]
            await store._write_batch(items)
        # After an outage: the lane tried the heads of half of the conversations, which now
        # wait for their retry, with the rest of their rows behind them.
        heads = await store.claim("console", NOW, min(pending, CONVERSATIONS) // 2, LEASE, OWNER)
        await store.retry_later([row.id for row in heads], NOW + 3600, "timeout", "")
        print(
            f"  {engine}: {pending} pending ({len(heads)} conversations waiting for a retry)"
            f" in {time.monotonic() - started:.1f} s",
            flush=True,
        )
        if engine == "postgresql":
            # What autovacuum does within a minute of such a fill: without any statistics
            # yet, the planner takes the tables for tiny and may scan what it should seek.
            await store._read(Statement("ANALYZE"))
            await store._read(Statement("CHECKPOINT"))
        # The fill wrote a few hundred MB in seconds; left to the kernel, it writes them back
        # about 30 s later, in the middle of the measurement, and every commit's fsync waits
        # behind it (a 0.25 s stall in one turn, the p99 of its column). A backlog built over
        # an outage has no such burst: write the fill out before measuring.
        os.sync()
        return store, cleanup

    async def drain(
        store: Any, limit: int, run: int, rows_cap: int, seconds: float
    ) -> tuple[float, int]:
        """Claim and mark sent until `rows_cap` rows are done or `seconds` pass: rows/s and
        claims made."""
        done = claims = 0
        started = time.perf_counter()
        while done < rows_cap and time.perf_counter() - started < seconds:
            rows = await store.claim("console", NOW, limit, LEASE, OWNER, run=run)
            claims += 1
            if not rows:
                break
            await store.mark_sent([row.id for row in rows], NOW)
            done += len(rows)
        return done / (time.perf_counter() - started), claims

    async def accepts(
        store: Any, lane_rate: float | None, seconds: float, scrape: bool = False
    ) -> tuple[list[float], float]:
        """Accepts at ACCEPT_RATE for `seconds`, while a coalescing lane claims and records
        `lane_rate` messages a second (None: as fast as it can; 0: no lane), and with
        `scrape` what a /metrics scrape reads every SCRAPE_EVERY s: each accept's latency
        (ms) and how many events the lane recorded a second."""
        stop = asyncio.Event()
        drained = 0

        async def scrapes() -> None:
            while not stop.is_set():
                await store.backlog()
                await store.dead_count()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), SCRAPE_EVERY)

        # As the relay's lanes claim: 16 heads, 32 rows of each conversation, and (since
        # the store takes it) at most LANE_BEHIND rows behind heads in all.
        capped = "behind" in inspect.signature(store.claim).parameters
        shape = {"run": 32, **({"behind": LANE_BEHIND} if capped else {})}

        async def lane() -> None:
            nonlocal drained
            started, messages = time.perf_counter(), 0
            while not stop.is_set():
                # As a lane with a Slack-sized message: what it carries is sent, the rest
                # given back (the backlog stays near its size while it is measured).
                rows = await store.claim("console", NOW, 16, LEASE, OWNER, **shape)
                carried, rest = rows[:MESSAGE_EVENTS], rows[MESSAGE_EVENTS:]
                if carried:
                    await store.mark_sent([row.id for row in carried], NOW)
                if rest:
                    await store.release([row.id for row in rest])
                drained += len(carried)
                messages += 1
                # As a lane between messages: the pacer's wait, or at least a turn for others.
                wait = 0.0 if lane_rate is None else started + messages / lane_rate
                await asyncio.sleep(max(0.0, wait - time.perf_counter()))

        latencies: list[float] = []

        async def one(n: int) -> None:
            started = time.perf_counter()
            await store.accept(incoming(10_000_000 + n, f"c{n % CONVERSATIONS}"))
            latencies.append(time.perf_counter() - started)

        task = asyncio.create_task(lane()) if lane_rate != 0 else None
        scraper = asyncio.create_task(scrapes()) if scrape else None
        pending: list[asyncio.Task[None]] = []
        started = time.perf_counter()
        n = 0
        while time.perf_counter() - started < seconds:
            pending.append(asyncio.create_task(one(n)))
            n += 1
            await asyncio.sleep(max(0.0, started + n / ACCEPT_RATE - time.perf_counter()))
        await asyncio.gather(*pending)
        stop.set()
        if task is not None:
            await task
        if scraper is not None:
            await scraper
        return [1000 * x for x in latencies], drained / (time.perf_counter() - started)

    # Both backlogs at once, measured in turns (see the module docstring).
    stores = {pending: await filled(pending) for pending in backlogs}
    result: dict[str, Any] = {"drain": {}}
    try:
        large = stores[max(backlogs)][0]

        async def measure_ingest() -> None:
            # The three lanes in turns as well, each accept's latency pooled per lane.
            lanes: dict[str, tuple[float | None, bool]] = {
                "idle": (0, False), "paced": (PACED_LANE, False), "flat_out": (None, False),
                "scraped": (PACED_LANE, True),
            }  # fmt: skip
            pooled: dict[str, list[float]] = {name: [] for name in lanes}
            drained: dict[str, list[float]] = {name: [] for name in lanes}
            for _ in range(ROUNDS):
                for name, (rate, scrape) in lanes.items():
                    ms, per_s = await accepts(large, rate, seconds / ROUNDS, scrape)
                    pooled[name] += ms
                    drained[name].append(per_s)
            result["ingest"] = {
                name: {
                    "accepts": len(ms),
                    "p50_ms": median(ms),
                    "p99_ms": percentile(ms, 99),
                    "max_ms": max(ms),
                    "drained_per_s": median(drained[name]),
                }
                for name, ms in pooled.items()
            }

        async def measure_drain(label: str, limit: int, run: int) -> None:
            rates: dict[int, list[float]] = {pending: [] for pending in backlogs}
            for _ in range(ROUNDS):
                for pending, (store, _) in stores.items():
                    cap = pending // (8 * ROUNDS)
                    rate, _ = await drain(store, limit, run, cap, seconds / ROUNDS)
                    rates[pending].append(rate)
            for pending, measured in rates.items():
                result["drain"].setdefault(str(pending), {})[label] = median(measured)
                result["drain"][str(pending)][label + "_rounds"] = measured

        await measure_drain("messages_per_s", 1, 1)
        await measure_ingest()  # while most of the large backlog is still there
        await measure_drain("coalesced_events_per_s", 16, 32)
    finally:
        for store, cleanup in stores.values():
            await store.close()
            cleanup()
    return result


async def open_store(engine: str) -> tuple[Any, Any]:
    """An open store on a fresh file or database, and what removes it afterwards."""
    if engine == "sqlite":
        from relay.store.sqlite import SQLiteStore

        directory = tempfile.TemporaryDirectory(prefix="bench-backlog-")
        sqlite_store = SQLiteStore(Path(directory.name) / "relay.db")
        await sqlite_store.open()
        return sqlite_store, directory.cleanup
    from relay.store.postgres import PostgresStore
    from tests.pg import create_database, drop_database

    url = create_database()
    pg_store = PostgresStore(url)
    await pg_store.open()
    return pg_store, lambda: drop_database(url)


def worker_main(argv: list[str]) -> int:
    """`python -m bench.backlog --worker SRC ENGINE SECONDS BACKLOG...`: measure with the
    `relay` package in SRC (imported before anything else), print the result as JSON."""
    src, engine, seconds, *backlogs = argv
    sys.path.insert(0, src)
    import relay.store

    print(f"  relay from {Path(relay.store.__file__).parent.parent}", flush=True)
    result = asyncio.run(worker(engine, float(seconds), [int(b) for b in backlogs]))
    print("RESULT " + json.dumps(result), flush=True)
    return 0


# --- in the benchmark process -------------------------------------------------------------------


def export_before(directory: Path) -> Path | None:
    """BEFORE's `relay` package in `directory`, or None (not a git checkout, unknown commit)."""
    try:
        archive = subprocess.run(
            ["git", "-C", str(ROOT), "archive", BEFORE, "relay"],
            capture_output=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(directory, filter="data")
    return directory


async def measure(src: Path, engine: str, seconds: float, backlogs: tuple[int, ...]) -> Any:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.backlog", "--worker", str(src), engine, str(seconds),
        *map(str, backlogs), cwd=ROOT, stdout=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
    )  # fmt: skip
    assert process.stdout is not None
    result = None
    async for raw in process.stdout:
        line = raw.decode().rstrip()
        if line.startswith("RESULT "):
            result = json.loads(line.removeprefix("RESULT "))
        else:
            print(line, flush=True)
    if await process.wait() != 0 or result is None:
        raise RuntimeError(f"the {engine} backlog worker for {src} failed")
    return result


async def main(quick: bool = False, before: bool = True) -> dict[str, Any]:
    seconds = 1.5 if quick else SECONDS
    backlogs = (1_000, 20_000) if quick else BACKLOGS
    small, large = (str(b) for b in backlogs)
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bench-backlog-src-") as temp:
        variants = {"heads": ROOT}
        old = export_before(Path(temp)) if before else None
        if old is not None:
            variants["before"] = old
        for engine in ("sqlite", "postgresql"):
            for name, src in variants.items():
                print(f"{engine}, {name}:", flush=True)
                results[f"{engine}/{name}"] = await measure(src, engine, seconds, backlogs)
    rows, checks = [], {}
    for key, r in results.items():
        drain, ingest = r["drain"], r["ingest"]
        ratio = drain[large]["messages_per_s"] / drain[small]["messages_per_s"]
        r["ratio"] = ratio
        rows.append(
            [key, drain[small]["messages_per_s"], drain[large]["messages_per_s"], ratio,
             drain[small]["coalesced_events_per_s"], drain[large]["coalesced_events_per_s"],
             ingest["idle"]["p99_ms"], ingest["paced"]["p99_ms"], ingest["flat_out"]["p99_ms"],
             ingest["flat_out"]["drained_per_s"], ingest["scraped"]["p99_ms"],
             ingest["scraped"]["max_ms"]]
        )  # fmt: skip
        if key.endswith("/heads"):
            checks[key.split("/")[0]] = {
                "drain_ratio": ratio >= TARGET_RATIO,
                "ingest_p99_paced_lane": ingest["paced"]["p99_ms"] < TARGET_P99_MS,
                "ingest_p99_flat_out_lane": ingest["flat_out"]["p99_ms"] < TARGET_P99_MS,
                "ingest_p99_paced_lane_scraped": ingest["scraped"]["p99_ms"] < TARGET_P99_MS,
            }
    text = table(
        f"Claims and a large backlog: {small} vs {large} pending over {CONVERSATIONS} "
        f"conversations, one destination; targets: drain ratio >= {TARGET_RATIO:g}, ingest "
        f"p99 < {TARGET_P99_MS:g} ms while draining (heads; before = {BEFORE})",
        ["engine/store", f"msg/s {small}", f"msg/s {large}", "ratio",
         f"coalesced ev/s {small}", f"coalesced ev/s {large}", "ingest p99 ms: no lane",
         f"lane {PACED_LANE:g} msg/s", "lane flat out", "flat out ev/s",
         f"lane {PACED_LANE:g} + scrape/{SCRAPE_EVERY:g}s", "max ms (scraped)"],
        rows,
    )  # fmt: skip
    print(text)
    result = {"backlogs": backlogs, "results": results, "checks": checks, "table": text}
    save("backlog", result)
    return result


if __name__ == "__main__":
    if sys.argv[1:2] == ["--worker"]:
        raise SystemExit(worker_main(sys.argv[2:]))
    asyncio.run(main(quick="--quick" in sys.argv))
