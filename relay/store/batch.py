"""Which events of a group commit are new: the duplicate bookkeeping both engines share.

A body accepted within DUPLICATE_WINDOW is not stored again. The store keeps a mark per
body hash (`seen`) naming the event it stands for. Each distinct body of a batch offers its
mark a candidate id, freshly allocated: the mark takes it when the body is new (never seen,
or its mark expired), or keeps its old event id (a duplicate). A body twice in one batch is
a duplicate of its first occurrence: they arrived together, well within the window.

The engines do the I/O (relay/store/sqlite.py, relay/store/postgres.py): allocate the
candidates, upsert the marks (schema.UPSERT_SEEN_TAIL), insert what `settle` says is new.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from relay.store.base import Accepted, Incoming


@dataclass(frozen=True)
class Mark:
    """A duplicate mark to upsert: the body, the id it would get if new, and when."""

    body_hash: bytes
    event_id: int
    seen_at: float


@dataclass(frozen=True)
class Settled:
    """What to insert for a batch, and each caller's answer (in batch order)."""

    events: list[tuple[int, Incoming]]  # new events with their ids, in batch order
    answers: list[Accepted]

    @property
    def deliveries(self) -> list[tuple[int, str, str | None, float]]:
        """(event id, destination, conversation, accepted at) per delivery row, in batch
        order: delivery ids follow it, which is each conversation's order."""
        return [
            (event_id, destination, item.conversation, item.received_at)
            for event_id, item in self.events
            for destination in item.destinations
        ]


class Batch:
    """The events one group commit stores, with their duplicates sorted out."""

    def __init__(self, items: Sequence[Incoming]) -> None:
        self.items = list(items)
        self._hashes = [item.body_hash for item in self.items]
        self._firsts: dict[bytes, int] = {}  # body hash -> index of its first item
        for index, body_hash in enumerate(self._hashes):
            self._firsts.setdefault(body_hash, index)

    @property
    def distinct(self) -> int:
        """How many candidate ids the batch needs: one per distinct body."""
        return len(self._firsts)

    def marks(self, candidates: Sequence[int]) -> list[Mark]:
        """One mark per distinct body, in batch order, offering it the next candidate
        (ascending candidates: new events' ids then follow the batch order)."""
        assert len(candidates) == self.distinct
        return [
            Mark(body_hash, event_id, self.items[index].received_at)
            for (body_hash, index), event_id in zip(
                self._firsts.items(), sorted(candidates), strict=True
            )
        ]

    def settle(self, marks: Sequence[Mark], stands_for: Mapping[bytes, int]) -> Settled:
        """`stands_for`: the event id each body's mark holds after the upsert. A body whose
        mark took its candidate is new; every other item is a duplicate."""
        fresh = {mark.body_hash for mark in marks if stands_for[mark.body_hash] == mark.event_id}
        events = [
            (stands_for[body_hash], self.items[index])
            for body_hash, index in self._firsts.items()
            if body_hash in fresh
        ]
        answers = [
            Accepted(
                stands_for[body_hash],
                duplicate=body_hash not in fresh or self._firsts[body_hash] != index,
            )
            for index, body_hash in enumerate(self._hashes)
        ]
        return Settled(events, answers)
