"""Changes to the relay tried in a bench run before proposing them, and instrumentation.

`python -m bench ingest --patch NAME[,NAME]` runs the relay through bench.patched, which
applies the named patches in the relay process and then runs `relay serve` as usual, so a
proposed change is measured against the shipped code in the same invocation. Each patch
is the proposed relay/ change (BENCHMARKS.md gives the diff), written as a monkeypatch.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

PATCHES: dict[str, Callable[[], None]] = {}


def patch(function: Callable[[], None]) -> Callable[[], None]:
    PATCHES[function.__name__.replace("_", "-")] = function
    return function


# Shorthands for sets of patches (BENCHMARKS.md: "What was changed for speed").
# The proposals measured here that were adopted (batched inserts, lean logging, the body
# timer only when waiting, cached counters and address parsing, pacing from arrival) are
# in relay/ now; what is left are experiments not adopted, and analysis-only patches.
GROUPS: dict[str, list[str]] = {"orjson": ["orjson-parse", "lean-answer"]}


def apply(names: list[str]) -> None:
    """Apply patches by name (or group). `src=DIR` runs the relay package found in DIR
    instead of the installed one (e.g. a scratch copy with proposed changes applied)."""
    import sys

    for name in [n for group in names for n in GROUPS.get(group, [group])]:
        if name.startswith("src="):
            if "relay" in sys.modules:
                raise SystemExit("src= must come before patches that import relay")
            sys.path.insert(0, name.removeprefix("src="))
            continue
        if name not in PATCHES:
            raise SystemExit(f"unknown patch {name!r}; known: {', '.join([*PATCHES, *GROUPS])}")
        PATCHES[name]()


# --- instrumentation --------------------------------------------------------------------------


@patch
def batch_stats() -> None:
    """Record the size and duration of every group commit (sqlite _insert_batch) and write
    them to $BENCH_STATS when the process exits."""
    from relay.store import sqlite

    sizes: Counter[int] = Counter()
    seconds: list[float] = []
    commits: list[float] = []
    insert = sqlite._insert_batch
    transaction = sqlite._transaction

    @contextlib.contextmanager
    def timed_transaction(db: Any) -> Any:
        with transaction(db):
            yield
            started = time.perf_counter()  # the COMMIT (and its fsync) runs on exit
        commits.append(time.perf_counter() - started)

    sqlite._transaction = timed_transaction

    cpu: list[float] = []

    def counted(db: Any, batch: list[Any]) -> Any:
        started, started_cpu = time.perf_counter(), time.thread_time()
        try:
            return insert(db, batch)
        finally:
            seconds.append(time.perf_counter() - started)
            cpu.append(time.thread_time() - started_cpu)
            sizes[len(batch)] += 1

    sqlite._insert_batch = counted

    def dump() -> None:
        path = os.environ.get("BENCH_STATS")
        if path:
            with open(path, "w") as file:
                json.dump(
                    {"sizes": dict(sizes), "seconds": seconds, "cpu": cpu, "commits": commits},
                    file,
                )

    atexit.register(dump)


# --- proposed changes -------------------------------------------------------------------------


@patch
def switch_interval() -> None:
    """sys.setswitchinterval(0.0005): the SQLite thread gets the GIL back sooner after each
    statement while the event loop is busy (CPython's default is 5 ms)."""
    import sys

    sys.setswitchinterval(0.0005)


@patch
def switch_interval_100us() -> None:
    """sys.setswitchinterval(0.0001)."""
    import sys

    sys.setswitchinterval(0.0001)


@patch
def orjson_parse() -> None:
    """relay/events.py parse_event(): parse with orjson first; anything it refuses or might
    read differently (a lone surrogate, a number it would round or overflow, NaN, bad
    UTF-8) takes the existing json path, which also words the 400 answer."""
    import orjson

    from relay import events
    from relay.ingest import server

    slow = events.parse_event
    # A run of 20 digits may be an integer beyond 64 bits, which orjson would turn into a
    # float; such bodies (rare) take the json path. translate() + `in` is ~1 us for 1 KiB
    # where a regex like rb"\d{20}" takes ~10 us.
    digits_to_zero = bytes.maketrans(b"123456789", b"000000000")
    twenty_digits = b"0" * 20

    def parse_event(body: bytes) -> dict[str, Any]:
        if twenty_digits not in body.translate(digits_to_zero):
            try:
                event = orjson.loads(body)
            except orjson.JSONDecodeError:
                pass
            else:
                if isinstance(event, dict):
                    return event
        return slow(body)

    events.parse_event = parse_event
    server.parse_event = parse_event


@patch
def lean_answer() -> None:
    """relay/ingest/server.py Ingest._answer(): the body serialised straight to bytes (no
    json_response: text, then encode)."""
    from aiohttp import web

    from relay.ingest.server import Ingest

    def _answer(
        self: Any, code: int, result: str, event: str | None = None, **body: Any
    ) -> web.Response:
        self.metrics.received(event, result)
        return web.Response(
            body=json.dumps(body).encode(), status=code, content_type="application/json"
        )

    Ingest._answer = _answer  # type: ignore[method-assign]


@patch
def no_store() -> None:
    """ANALYSIS ONLY: accept() answers at once without writing (and lanes are not woken, as
    there is nothing to deliver): the ceiling of everything else the relay does."""
    from relay.store.base import Accepted
    from relay.store.sqlite import SQLiteStore

    counter = iter(range(1, 1 << 62))

    async def accept(self: Any, incoming: Any) -> Any:
        return Accepted(next(counter), duplicate=False)

    SQLiteStore.accept = accept  # type: ignore[method-assign]
    from relay.service import Relay

    Relay._wake = lambda self, destinations: None  # type: ignore[method-assign]  # nothing to deliver


@patch
def no_fsync() -> None:
    """ANALYSIS ONLY: synchronous=OFF (no fsync): what the disk flush costs."""
    from relay.store.sqlite import SQLiteStore

    init = SQLiteStore.__init__

    def __init__(self: Any, path: Any, *, synchronous: str = "FULL", **options: Any) -> None:
        init(self, path, synchronous="OFF", **options)

    SQLiteStore.__init__ = __init__  # type: ignore[method-assign]


@patch
def inline_store() -> None:
    """ANALYSIS ONLY: every SQLite call runs on the event loop's thread (blocking it), so
    no GIL handoff to the store thread is ever waited for."""
    from relay.store.sqlite import SQLiteStore

    async def _run(self: Any, function: Any, *args: Any, reader: bool = False) -> Any:
        return function(*args)

    SQLiteStore._run = _run  # type: ignore[method-assign]


# --- the before of `python -m bench amplifier` ------------------------------------------------


@patch
def reserialise_inline() -> None:
    """Re-serialise every body on the event loop, whatever its size, as before
    relay/ingest/offload.py (a wrong signature on 1 MiB then cost the loop up to 0.9 s)."""
    from relay.ingest import offload, server

    offload.INLINE_MAX = server.MAX_BODY


# --- analysis of the leaner ingest (BENCHMARKS.md: "A leaner ingest") ------------------------


@patch
def no_request_log() -> None:
    """ANALYSIS ONLY: no line per accepted request (relay.ingest at WARNING)."""
    import logging

    logging.getLogger("relay.ingest").setLevel(logging.WARNING)


@patch
def no_wake() -> None:
    """ANALYSIS ONLY: accepted events do not wake their lanes (they find them on their own
    next poll): what the wake-up costs per request."""
    from relay.service import Relay

    Relay._wake = lambda self, destinations: None  # type: ignore[method-assign]
