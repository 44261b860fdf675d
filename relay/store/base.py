"""The store: what the relay remembers, behind interfaces cut by who calls them.

Ingest writes an event and one delivery row per routed destination in one transaction
before it answers 200 (IngestStore); lanes claim due rows, oldest first per conversation,
and record what happened to each (LaneStore); operators and upkeep read and repair
(AdminStore). SQLite (one instance) and PostgreSQL (several) implement all of it (Store).

A delivery row is `pending` until it is `sent` or `dead`. A pending row is due when its
`next_at` has passed and no lease of the claiming lane holds it; a conversation's row is
claimable only when no earlier row of that conversation for that destination is still
pending, which is what keeps each conversation in order (those rows, the heads, are kept
in a table of their own: relay/store/schema.py). Only the instance holding a
destination's lane claims its rows, so rows leased by an earlier holder (a crashed
process) are taken back at once.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from relay.store.replies import AnswersStore
from relay.store.views import ConsoleStore

DUPLICATE_WINDOW = 24 * 3600.0  # the same body within this window is not stored twice


@dataclass(frozen=True)
class Incoming:
    """An event ingest has verified and routed, ready to be stored."""

    body: bytes
    event_name: str | None
    conversation: str | None
    destinations: tuple[str, ...]
    received_at: float

    @property
    def body_hash(self) -> bytes:
        return hashlib.sha256(self.body).digest()


@dataclass(frozen=True)
class Accepted:
    event_id: int
    duplicate: bool  # the same body was accepted within DUPLICATE_WINDOW: nothing new stored


@dataclass(frozen=True)
class Claimed:
    """A delivery row a lane now holds: deliver it, then record the outcome."""

    id: int
    event_id: int
    destination: str
    conversation: str | None
    attempts: int  # failed attempts so far
    progress: int  # messages of the rendering already sent (an event may need several)
    created_at: float  # when the event was accepted
    retry_from: float  # start of the retry window (acceptance, or the last `dead retry`)
    body: bytes


@dataclass(frozen=True)
class DeadLetter:
    id: int
    event_id: int
    event_name: str | None
    destination: str
    conversation: str | None
    attempts: int
    reason: str
    detail: str
    created_at: float
    died_at: float


@dataclass(frozen=True)
class Backlog:
    """Pending deliveries of one destination, for metrics and readiness."""

    destination: str
    pending: int
    oldest_created_at: float | None


class IngestStore(Protocol):
    """What ingest needs: store an event before it answers 200 (relay/ingest/server.py)."""

    async def accept(self, incoming: Incoming) -> Accepted:
        """Durably store the event and its delivery rows (one transaction, batched commits)."""

    async def check_writable(self) -> None:
        """Raise StoreUnavailable unless an event could be stored right now: a real write of
        an event-sized row, committed (a disk that is full or read-only still reads)."""


class LaneStore(Protocol):
    """What a lane needs: claim its destination's rows and record each outcome
    (relay/lanes.py)."""

    async def hold_lane(self, destination: str, owner: str, ttl: float, now: float) -> bool:
        """Take or renew the right to deliver for `destination` (one instance at a time)."""

    async def release_lane(self, destination: str, owner: str) -> None:
        """Give the lane up (a clean stop), so another instance takes it at once."""

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
        """Lease up to `limit` due heads of conversations to `owner`, soonest due first, each
        with the due rows right behind it (`run` rows in all at most, stopping at one not
        due), and of the rows behind heads only the `behind` oldest (None: no such cap); all
        of them in id order. Costs the same however many rows are pending."""

    async def release(self, ids: Sequence[int]) -> None:
        """Give back claimed rows not attempted (shutdown): due again at once."""

    async def save_progress(self, delivery_id: int, progress: int) -> None:
        """Record how many messages of the row's rendering were sent."""

    # Each outcome also records an attempt of every row (the console's history): when (`now`;
    # retry_later's defaults to the wall clock), and how long the send `took`.
    async def mark_sent(self, ids: Sequence[int], now: float, took: float = 0.0) -> None: ...
    async def retry_later(
        self,
        ids: Sequence[int],
        next_at: float,
        reason: str,
        detail: str,
        now: float | None = None,
        took: float = 0.0,
    ) -> None: ...
    async def bury(
        self, ids: Sequence[int], now: float, reason: str, detail: str, took: float = 0.0
    ) -> None:
        """Dead-letter the row: it is not tried again unless an operator revives it."""

    async def next_due(self, destination: str, owner: str) -> float | None:
        """When the next row becomes claimable by `owner` (None: nothing pending)."""

    async def thread_parent(self, destination: str, conversation: str) -> str | None: ...
    async def set_thread_parent(self, destination: str, conversation: str, ref: str) -> str:
        """Record the conversation's parent message unless one exists; return the parent."""


class AdminStore(Protocol):
    """What operators and upkeep need: dead letters, metrics, pruning (relay/cli.py,
    relay/service.py)."""

    async def dead_letters(self, limit: int = 1000) -> list[DeadLetter]: ...
    async def dead_count(self) -> int: ...
    async def revive(self, ids: Sequence[int] | None, now: float) -> int:
        """Put dead deliveries (these ids, or all when None) back in line; how many."""

    async def bury_destination(self, destination: str, now: float, reason: str) -> int:
        """Dead-letter every pending row of a destination that no longer exists."""

    async def backlog(self) -> list[Backlog]:
        """Pending rows per destination (only destinations that have some)."""

    async def prune(self, now: float, retention: float) -> int:
        """Delete delivered events older than `retention` and expired duplicate marks."""


class Store(IngestStore, LaneStore, AdminStore, ConsoleStore, AnswersStore, Protocol):
    """A whole engine: every caller's part, and its lifecycle."""

    async def open(self) -> None:
        """Connect and migrate; raise StoreUnavailable (StoreLocked) when it cannot."""

    async def close(self) -> None:
        """Let queued events commit (or refuse them), then disconnect."""

    async def ping(self) -> None:
        """Raise StoreUnavailable unless the store answers."""
