"""What each index costs ingest: the store layout, event by event.

The relay's own SQLite group commit (`_insert_batch`) stores the benchmark's events
(the sample body, unique, over CONVERSATIONS conversations, one destination) in batches
of 16 into a fresh file, in one thread with nothing else running: once with the schema as
shipped, once without each index that a stored event adds an entry to, and once with
deliveries_due back (the index migration 7 dropped). Each index's
figure is what dropping it would save, as CPU per event; synchronous=OFF, so that the
disk's flush (the same for all) does not hide it. It is the "leaner store layout" side of
issue 12: every index here is read by some statement (relay/store/schema.py, views.py),
and what it costs is weighed against that.

    python -m bench layout [--quick]
"""

from __future__ import annotations

import sqlite3
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import conversation_id, median, render_body, save, table, template_spec
from relay.store.base import Incoming
from relay.store.sqlite import SQLiteStore, _insert_batch

BATCH = 16
# The index migration 7 dropped, as migration 1 made it: the before of that change.
DROPPED = (
    "deliveries_due",
    "CREATE INDEX deliveries_due ON deliveries (destination, next_at, id) WHERE state = 'pending'",
)


def indexes_written_per_event(db: sqlite3.Connection) -> list[str]:
    """The indexes of the tables an event writes to (a partial one if a new row is in it)."""
    rows = db.execute(
        "SELECT name, tbl_name, sql FROM sqlite_master WHERE type = 'index'"
        " AND tbl_name IN ('events', 'deliveries', 'seen', 'heads') AND sql IS NOT NULL"
    ).fetchall()
    # A new delivery is pending: partial indexes of other states are not written.
    return [name for name, _, sql in rows if "WHERE" not in sql or "'pending'" in sql]


def cpu_per_event(directory: Path, events: int, variant: str) -> float:
    """`variant`: "shipped", "-INDEX" (dropped) or "+INDEX" (the one in DROPPED, added)."""
    store = SQLiteStore(directory / f"layout-{variant}.db", synchronous="OFF")
    store._connect()
    db = store._db
    assert db is not None
    if variant.startswith("-"):
        db.execute(f"DROP INDEX {variant[1:]}")
    elif variant.startswith("+"):
        db.execute(DROPPED[1])
    spec = template_spec()
    batches = [
        [
            Incoming(
                render_body(spec, f"layout-{n}", conversation_id(n)),
                "newMessage",
                conversation_id(n),
                ("support-slack",),
                time.time(),
            )
            for n in range(start, start + BATCH)
        ]
        for start in range(0, events, BATCH)
    ]
    started = time.thread_time()
    for batch in batches:
        _insert_batch(db, batch)
    spent = time.thread_time() - started
    db.close()
    return 1e6 * spent / events


async def main(quick: bool = False) -> dict[str, Any]:
    events, rounds = (4_000, 3) if quick else (16_000, 5)
    with tempfile.TemporaryDirectory(prefix="bench-layout-") as temp:
        directory = Path(temp)
        probe = SQLiteStore(directory / "probe.db")
        probe._connect()
        assert probe._db is not None
        names = indexes_written_per_event(probe._db)
        probe._db.close()
        variants = ["shipped", f"+{DROPPED[0]}", *(f"-{name}" for name in names)]
        runs: dict[str, list[float]] = {variant: [] for variant in variants}
        for round_ in range(rounds):  # interleaved, so that a busy moment hits all alike
            round_dir = directory / str(round_)
            round_dir.mkdir()
            for variant in variants:
                runs[variant].append(cpu_per_event(round_dir, events, variant))
    shipped = median(runs["shipped"])
    summary = {
        name: {"cpu_us_per_event": median(values), "ratio": median(values) / shipped}
        for name, values in runs.items()
    }
    words = {"-": "without", "+": "with"}
    rows = [["schema as shipped", shipped, 1.0, "-"]] + [
        [f"{words[name[0]]} {name[1:]}", figures["cpu_us_per_event"], figures["ratio"],
         f"{shipped - figures['cpu_us_per_event']:.1f}"]
        for name, figures in sorted(summary.items(), key=lambda item: item[1]["ratio"])
        if name != "shipped"
    ]  # fmt: skip
    text = table(
        f"Store layout: _insert_batch, {events} events in batches of {BATCH}, "
        f"median of {rounds} rounds (synchronous=OFF)",
        ["schema", "CPU us/event", "x shipped", "saves us/event"],
        rows,
    )
    print(text)
    result = {"summary": summary, "runs": runs, "checks": {}, "table": text}
    save("layout", result)
    return result
