"""The schema and the statements both engines run, written once (macros: relay/store/sql.py).

A delivery row is `pending` until it is `sent` or `dead`. A pending row is due when its
`next_at` has passed and no lease of the claiming lane holds it; a conversation's row is
claimable only when no earlier row of that conversation for that destination is still
pending, which keeps each conversation in order.

Migrations only ever add. Each engine records how far it got (SQLite in `PRAGMA
user_version`, PostgreSQL in `schema_migrations`) and applies the rest, so a migration,
once released, is never edited: what it did is in databases in the field.
"""

from __future__ import annotations

from dataclasses import dataclass

from relay.store import replies
from relay.store.sql import Dialect, Statement, expand


@dataclass(frozen=True)
class Migration:
    """One schema version: what both engines get, and what only one of them needs."""

    both: str
    sqlite: str = ""
    postgresql: str = ""

    def script(self, dialect: Dialect) -> str:
        only = self.sqlite if dialect is Dialect.SQLITE else self.postgresql
        return expand(self.both + only, dialect)


def statements(script: str) -> list[str]:
    """The statements of a migration script (no `;` inside a statement)."""
    return [text.strip() for text in script.split(";") if text.strip()]


MIGRATIONS: tuple[Migration, ...] = (
    # 1: release 0.1.0.
    Migration(
        both="""
        CREATE TABLE events (
            id {id},
            received_at {real} NOT NULL,
            event_name TEXT,
            conversation TEXT,
            body {blob} NOT NULL
        );
        CREATE TABLE seen (
            body_hash {blob} PRIMARY KEY,
            event_id {bigint} NOT NULL,
            seen_at {real} NOT NULL
        );
        CREATE TABLE deliveries (
            id {id},
            event_id {bigint} NOT NULL REFERENCES events(id) ON DELETE CASCADE,
            destination TEXT NOT NULL,
            conversation TEXT,
            state TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'sent', 'dead')),
            attempts INTEGER NOT NULL DEFAULT 0,
            progress INTEGER NOT NULL DEFAULT 0,
            next_at {real} NOT NULL,
            lease_until {real},
            lease_owner TEXT,
            reason TEXT,
            detail TEXT,
            created_at {real} NOT NULL,
            retry_from {real} NOT NULL,
            finished_at {real}
        );
        CREATE INDEX deliveries_due ON deliveries (destination, next_at, id)
            WHERE state = 'pending';
        CREATE INDEX deliveries_order ON deliveries (destination, conversation, id)
            WHERE state = 'pending';
        CREATE INDEX deliveries_event ON deliveries (event_id);
        CREATE INDEX deliveries_dead ON deliveries (finished_at) WHERE state = 'dead';
        CREATE TABLE threads (
            destination TEXT NOT NULL,
            conversation TEXT NOT NULL,
            parent TEXT NOT NULL,
            PRIMARY KEY (destination, conversation)
        );
        """,
        # Several instances: lanes (who delivers for a destination), and indexes for
        # prunes and claims that run while other instances write.
        postgresql="""
        CREATE INDEX events_received ON events (received_at);
        CREATE INDEX seen_at ON seen (seen_at);
        CREATE INDEX deliveries_claim ON deliveries (destination, id) WHERE state = 'pending';
        CREATE TABLE lanes (
            destination TEXT PRIMARY KEY,
            owner TEXT NOT NULL,
            until DOUBLE PRECISION NOT NULL
        );
        """,
    ),
    # 2: ids are never reused. SQLite's rowid is max(id) + 1, so pruning the newest events
    # would hand their ids out again while their duplicate marks (`seen`) still name them.
    # The store allocates ids from these counters instead (never below max(id): see
    # sqlite.py), seeded past every id still on file. PostgreSQL identities never reuse.
    Migration(
        both="",
        sqlite="""
        CREATE TABLE id_counters (name TEXT PRIMARY KEY, last_id INTEGER NOT NULL);
        INSERT INTO id_counters (name, last_id) VALUES (
            'events', max(
                (SELECT coalesce(max(id), 0) FROM events),
                (SELECT coalesce(max(event_id), 0) FROM seen)));
        INSERT INTO id_counters (name, last_id) VALUES (
            'deliveries', (SELECT coalesce(max(id), 0) FROM deliveries));
        """,
    ),
    # 3: the table check_writable() writes to and empties again.
    Migration(both="CREATE TABLE write_probe (id {id}, filler {blob} NOT NULL);"),
    # 6: answers: the relay's messages and topics per conversation, answers going out, and
    # an index to find a conversation's latest events (relay/store/replies.py).
    Migration(both=replies.MIGRATION),
)


# --- lanes ------------------------------------------------------------------------------------

# No earlier row of the row's conversation (for that destination) is still pending. A row
# another instance holds locked (skipped by the claim) still counts as pending here: the
# check reads rows without locking them.
_HEAD_OF_CONVERSATION = """
(d.conversation IS NULL OR NOT EXISTS (
    SELECT 1 FROM deliveries AS p
    WHERE p.destination = d.destination AND p.conversation = d.conversation
      AND p.state = 'pending' AND p.id < d.id))
"""

# Due heads of conversations, not leased by `owner` (another owner's lease is from an earlier
# holder of the lane: taken back at once). PostgreSQL skips rows another transaction is
# claiming or finishing right now rather than waiting for them or taking them twice.
CLAIM = Statement(
    f"""
    WITH picked AS (
        SELECT d.id FROM deliveries AS d
        WHERE d.destination = :destination AND d.state = 'pending' AND d.next_at <= :now
          AND (d.lease_until IS NULL OR d.lease_until <= :now OR d.lease_owner <> :owner)
          AND {_HEAD_OF_CONVERSATION}
        ORDER BY d.id LIMIT :limit {{skip_locked}}
    )
    UPDATE deliveries SET lease_until = :lease_until, lease_owner = :owner
    WHERE id IN (SELECT id FROM picked)
    RETURNING id, event_id, destination, conversation, attempts, progress, created_at,
        retry_from, (SELECT body FROM events WHERE events.id = deliveries.event_id)
    """,  # noqa: S608 - constant fragments, no input
    rows=True,
)

# The due pending rows of a conversation behind its head, to share its message.
CLAIM_FOLLOWERS = Statement(
    """
    WITH picked AS (
        SELECT d.id FROM deliveries AS d
        WHERE d.destination = :destination AND d.conversation = :conversation
          AND d.state = 'pending' AND d.id > :after AND d.next_at <= :now
        ORDER BY d.id LIMIT :limit {skip_locked}
    )
    UPDATE deliveries SET lease_until = :lease_until, lease_owner = :owner
    WHERE id IN (SELECT id FROM picked)
    RETURNING id, event_id, destination, conversation, attempts, progress, created_at,
        retry_from, (SELECT body FROM events WHERE events.id = deliveries.event_id)
    """,
    rows=True,
)

# When the next row becomes claimable: heads of conversations only (a row behind another
# waits for it, not for its own time), and not rows this owner is delivering right now.
NEXT_DUE = Statement(
    f"""
    SELECT min(d.next_at) FROM deliveries AS d
    WHERE d.destination = :destination AND d.state = 'pending'
      AND (d.lease_owner IS NULL OR d.lease_owner <> :owner)
      AND {_HEAD_OF_CONVERSATION}
    """,  # noqa: S608 - a constant fragment, no input
    rows=True,
)

RELEASE = Statement(
    "UPDATE deliveries SET lease_until = NULL, lease_owner = NULL WHERE id IN ({ids})"
)

SAVE_PROGRESS = Statement("UPDATE deliveries SET progress = :progress WHERE id = :id")

MARK_SENT = Statement(
    """
    UPDATE deliveries SET state = 'sent', finished_at = :now, lease_until = NULL,
        lease_owner = NULL
    WHERE id = :id
    """
)

RETRY_LATER = Statement(
    """
    UPDATE deliveries SET attempts = attempts + 1, next_at = :next_at, reason = :reason,
        detail = :detail, lease_until = NULL, lease_owner = NULL
    WHERE id = :id
    """
)

BURY = Statement(
    """
    UPDATE deliveries SET state = 'dead', attempts = attempts + 1, finished_at = :now,
        reason = :reason, detail = :detail, lease_until = NULL, lease_owner = NULL
    WHERE id = :id
    """
)

THREAD_PARENT = Statement(
    "SELECT parent FROM threads WHERE destination = :destination AND conversation = :conversation",
    rows=True,
)

# The first writer wins. On PostgreSQL, ON CONFLICT DO NOTHING waits for a concurrent first
# writer to commit, so THREAD_PARENT after it (a fresh snapshot) always sees the winner.
ADD_THREAD_PARENT = Statement(
    """
    INSERT INTO threads (destination, conversation, parent)
    VALUES (:destination, :conversation, :parent)
    ON CONFLICT DO NOTHING
    """
)

# --- operators --------------------------------------------------------------------------------

DEAD_LETTERS = Statement(
    """
    SELECT d.id, d.event_id, e.event_name, d.destination, d.conversation, d.attempts,
           coalesce(d.reason, ''), coalesce(d.detail, ''), d.created_at, d.finished_at
    FROM deliveries AS d JOIN events AS e ON e.id = d.event_id
    WHERE d.state = 'dead' ORDER BY d.id LIMIT :limit
    """,
    rows=True,
)

DEAD_COUNT = Statement("SELECT count(*) FROM deliveries WHERE state = 'dead'", rows=True)

_REVIVE = """
UPDATE deliveries SET state = 'pending', next_at = :now, attempts = 0, retry_from = :now,
    finished_at = NULL
WHERE state = 'dead'
"""
REVIVE_ALL = Statement(_REVIVE)
REVIVE = Statement(_REVIVE + " AND id IN ({ids})")

BURY_DESTINATION = Statement(
    """
    UPDATE deliveries SET state = 'dead', finished_at = :now, reason = :reason,
        detail = 'the destination is no longer in the config', lease_until = NULL,
        lease_owner = NULL
    WHERE destination = :destination AND state = 'pending'
    """
)

BACKLOG = Statement(
    """
    SELECT destination, count(*), min(created_at) FROM deliveries
    WHERE state = 'pending' GROUP BY destination ORDER BY destination
    """,
    rows=True,
)

# Marks an ingest transaction is re-using right now are skipped, not waited for: they are
# either fresh again or gone next time.
PRUNE_SEEN = Statement(
    """
    DELETE FROM seen WHERE body_hash IN (
        SELECT body_hash FROM seen WHERE seen_at < :before {skip_locked})
    """
)

PRUNE_EVENTS = Statement(
    """
    DELETE FROM events WHERE received_at < :before AND NOT EXISTS (
        SELECT 1 FROM deliveries AS d WHERE d.event_id = events.id AND d.state <> 'sent')
    """
)

# --- ingest -----------------------------------------------------------------------------------

# The tail of each engine's multi-row upsert of duplicate marks (relay/store/batch.py). A
# fresh body (never seen, or last seen before the window) takes the candidate event id; a
# duplicate keeps its mark as it was. Always "updating" the conflicting row makes RETURNING
# report the event id either way (and on PostgreSQL its row lock keeps a concurrent prune
# from deleting the mark under us). `{window}`: the engine's placeholder for the window.
UPSERT_SEEN_TAIL = """
ON CONFLICT (body_hash) DO UPDATE SET
    event_id = CASE WHEN seen.seen_at < excluded.seen_at - {window}
               THEN excluded.event_id ELSE seen.event_id END,
    seen_at = CASE WHEN seen.seen_at < excluded.seen_at - {window}
              THEN excluded.seen_at ELSE seen.seen_at END
RETURNING body_hash, event_id
"""

# --- the write probe --------------------------------------------------------------------------

# An event-sized row needs new pages (SQLite: overflow pages, from the free list or by growing
# the file) and a commit appends them to the log: what a full or read-only disk refuses.
PROBE_WRITE = Statement("INSERT INTO write_probe (filler) VALUES (:filler)")
PROBE_CLEAR = Statement("DELETE FROM write_probe")
