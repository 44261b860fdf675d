"""The Store methods that are the same on every engine, written once.

Outcomes, threads, dead letters, backlog, pruning and the write probe are the same
statements on SQLite and PostgreSQL (relay/store/schema.py). An engine provides two
primitives, `_read` and `_write`, and what truly differs: connecting, locking, ingest, the
claim (three statements on SQLite's thread, one on PostgreSQL) and how an outcome that
finishes rows moves their conversations' heads (relay/store/sqlite.py,
relay/store/postgres.py).
"""

from __future__ import annotations

import asyncio
import os
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

from relay.errors import StoreUnavailable
from relay.store import schema
from relay.store.base import DUPLICATE_WINDOW, Backlog, Claimed, DeadLetter
from relay.store.replies import RepliesStore
from relay.store.sql import Statement, Step, step
from relay.store.views import attempt_step

PROBE_BYTES = 8192  # about a large event: more than a page, so it needs pages of its own
PROBE_TIMEOUT = 2.0  # slower than this, a readiness probe had better say "not ready"
PRUNE_CHUNK = 500  # rows of a table one prune transaction deletes at most (schema.PRUNE_*)


class SharedStore(RepliesStore, ABC):
    @abstractmethod
    async def _read(self, statement: Statement, **params: Any) -> list[Sequence[Any]]:
        """The rows of one query (no transaction of its own needed)."""

    @abstractmethod
    async def _write(self, *steps: Step) -> list[Any]:
        """Run `steps` in one transaction: per step, its rows if it returns rows, else how
        many rows it changed. Any failure rolls it all back and raises StoreUnavailable."""

    @abstractmethod
    def _describe(self) -> str:
        """Which store this is, for messages: a path, or a server (never a password)."""

    # --- ingest -------------------------------------------------------------------------------

    async def check_writable(self) -> None:
        """Write an event-sized row and delete it again, in one committed transaction."""
        probe = (
            step(schema.PROBE_WRITE, filler=os.urandom(PROBE_BYTES)),  # random: no compression
            step(schema.PROBE_CLEAR),
        )
        try:
            await asyncio.wait_for(self._write(*probe), PROBE_TIMEOUT)
        except TimeoutError:
            raise StoreUnavailable(
                f"{self._describe()}: a test write took longer than {PROBE_TIMEOUT:g} s"
                " (is the disk or the database overloaded?)"
            ) from None

    # --- lanes --------------------------------------------------------------------------------

    async def claim(
        self,
        destination: str,
        now: float,
        limit: int,
        lease: float,
        owner: str,
        run: int = 1,
        behind: int | None = None,
    ) -> list[Claimed]:
        each = max(0, run - 1)  # rows behind each head
        rows = await self._claim(
            destination=destination,
            now=now,
            limit=limit,
            lease_until=now + lease,
            owner=owner,
            run=each,
            behind=limit * each if behind is None else max(0, behind),  # in all
        )
        return sorted((Claimed(*row) for row in rows), key=lambda row: row.id)

    @abstractmethod
    async def _claim(self, **params: Any) -> list[Sequence[Any]]:
        """Lease due heads (up to `limit`, soonest due first) and the due rows right behind
        each (up to `run`; the `behind` oldest of those in all) to `owner`, in one
        transaction; their rows (schema.CLAIM)."""

    async def release(self, ids: Sequence[int]) -> None:
        if ids:
            await self._write(
                step(schema.RELEASE_HEADS, ids=list(ids)), step(schema.RELEASE, ids=list(ids))
            )

    async def save_progress(self, delivery_id: int, progress: int) -> None:
        await self._write(step(schema.SAVE_PROGRESS, id=delivery_id, progress=progress))

    async def mark_sent(self, ids: Sequence[int], now: float, took: float = 0.0) -> None:
        if ids:
            await self._write(
                *self._finish_steps(step(schema.MARK_SENT, ids=list(ids), now=now)),
                attempt_step(ids, now, "sent", None, None, took),
            )

    async def retry_later(
        self,
        ids: Sequence[int],
        next_at: float,
        reason: str,
        detail: str,
        now: float | None = None,
        took: float = 0.0,
    ) -> None:
        if ids:
            where = {"ids": list(ids), "next_at": next_at}
            at = time.time() if now is None else now
            await self._write(
                step(schema.RETRY_HEADS, **where),
                step(schema.RETRY_LATER, reason=reason, detail=detail, **where),
                attempt_step(ids, at, "retry", reason, detail, took),
            )

    async def bury(
        self, ids: Sequence[int], now: float, reason: str, detail: str, took: float = 0.0
    ) -> None:
        if ids:
            await self._write(
                *self._finish_steps(
                    step(schema.BURY, ids=list(ids), now=now, reason=reason, detail=detail)
                ),
                attempt_step(ids, now, "dead", reason, detail, took),
            )

    def _finish_steps(self, finish: Step) -> list[Step]:
        """`finish` (MARK_SENT or BURY of `ids`) and what it does to heads: the finished
        rows' conversations move on to their next pending row."""
        ids = finish.params["ids"]
        return [finish, step(schema.DROP_HEADS, ids=ids), step(schema.NEXT_HEADS, ids=ids)]

    async def next_due(self, destination: str, owner: str) -> float | None:
        rows = await self._read(schema.NEXT_DUE, destination=destination, owner=owner)
        return float(rows[0][0]) if rows else None

    async def thread_parent(self, destination: str, conversation: str) -> str | None:
        rows = await self._read(
            schema.THREAD_PARENT, destination=destination, conversation=conversation
        )
        return str(rows[0][0]) if rows else None

    async def set_thread_parent(self, destination: str, conversation: str, ref: str) -> str:
        where = {"destination": destination, "conversation": conversation}
        _, ((parent,),) = await self._write(
            step(schema.ADD_THREAD_PARENT, parent=ref, **where),
            step(schema.THREAD_PARENT, **where),
        )
        return str(parent)

    # --- operators ----------------------------------------------------------------------------

    async def dead_letters(self, limit: int = 1000) -> list[DeadLetter]:
        return [DeadLetter(*row) for row in await self._read(schema.DEAD_LETTERS, limit=limit)]

    async def dead_count(self) -> int:
        ((count,),) = await self._read(schema.DEAD_COUNT)
        return int(count)

    async def revive(self, ids: Sequence[int] | None, now: float) -> int:
        if ids is None:  # every row dead now; one buried meanwhile waits for the next time
            ids = [dead for (dead,) in await self._read(schema.DEAD_IDS)]
        if not ids:
            return 0
        count, _ = await self._write(
            step(schema.REVIVE, now=now, ids=list(ids)), step(schema.REVIVE_HEADS, ids=list(ids))
        )
        return int(count)

    async def bury_destination(self, destination: str, now: float, reason: str) -> int:
        where = {"destination": destination}
        _, count, _ = await self._write(
            step(schema.LOCK_DESTINATION_HEADS, **where),
            step(schema.BURY_DESTINATION, now=now, reason=reason, **where),
            step(schema.DROP_DESTINATION_HEADS, **where),
        )
        return int(count)

    async def backlog(self) -> list[Backlog]:
        return [Backlog(*row) for row in await self._read(schema.BACKLOG)]

    async def prune(self, now: float, retention: float) -> int:
        """Delete expired duplicate marks and delivered events past retention, PRUNE_CHUNK
        rows of each a transaction until none is left, then the rest of the upkeep once;
        how many events went."""
        events = 0
        while True:
            seen, deleted = await self._write(
                step(schema.PRUNE_SEEN, before=now - DUPLICATE_WINDOW, chunk=PRUNE_CHUNK),
                step(schema.PRUNE_EVENTS, before=now - retention, chunk=PRUNE_CHUNK),
            )
            events += int(deleted)
            if max(int(seen), int(deleted)) < PRUNE_CHUNK:
                break
        await self._write(*self._prune_steps(now, retention))
        return events

    def _prune_steps(self, now: float, retention: float) -> list[Step]:
        """The upkeep a prune does once, after the marks and events (small tables, not
        chunked); an engine may add its own."""
        return self._replies_prune_steps(now)
