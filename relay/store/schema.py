"""The schema and the statements both engines run, written once (macros: relay/store/sql.py).

A delivery row is `pending` until it is `sent` or `dead`. A pending row is due when its
`next_at` has passed and no lease of the claiming lane holds it; a conversation's row is
claimable only when no earlier row of that conversation for that destination is still
pending, which keeps each conversation in order. Those oldest pending rows, the heads, are
kept in a table of their own (migration 4), so that a claim costs the same whatever the
backlog behind them.

Migrations only ever add, or drop what the releases since heads no longer read (7), so
that a release rolled back still runs on the newer database. Each engine records how far it
got (SQLite in `PRAGMA user_version`, PostgreSQL in `schema_migrations`) and applies the
rest, so a migration, once released, is never edited: what it did is in databases in the
field.
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
    # 4: heads of conversations (issue 12). Finding the due heads among the pending rows
    # took a look at every pending row; a claim now reads only the heads it takes, whatever
    # the backlog behind them. One row per destination and conversation with pending rows,
    # naming its oldest, with the due time and lease that claims filter on (copies of the
    # delivery's); a delivery without a conversation is its own head. Kept by the store
    # (shared.py), backfilled here from the pending rows on file. No foreign key: a head
    # names a pending row, which pruning never deletes, and the check would cost every write.
    # A relay older than this does not keep heads: rolled back onto such a database, what it
    # stores or finishes leaves them stale for this version (until rebuilt: DELETE FROM heads,
    # then this migration's INSERT, with no relay running).
    Migration(
        both="""
        CREATE TABLE heads (
            delivery_id {bigint} PRIMARY KEY,
            destination TEXT NOT NULL,
            conversation TEXT,
            next_at {real} NOT NULL,
            lease_until {real},
            lease_owner TEXT
        );
        CREATE UNIQUE INDEX heads_conversation ON heads (destination, conversation);
        CREATE INDEX heads_due ON heads (destination, next_at, delivery_id);
        INSERT INTO heads (delivery_id, destination, conversation, next_at, lease_until,
            lease_owner)
        SELECT d.id, d.destination, d.conversation, d.next_at, d.lease_until, d.lease_owner
        FROM deliveries AS d
        WHERE d.state = 'pending' AND (d.conversation IS NULL OR NOT EXISTS (
            SELECT 1 FROM deliveries AS p
            WHERE p.destination = d.destination AND p.conversation = d.conversation
              AND p.state = 'pending' AND p.id < d.id));
        """
    ),
    # 5: the operator console (relay/store/views.py): an index for each of its filters, read
    # newest first, and every delivery attempt (deleted with its delivery, and so with its
    # event when the event is pruned).
    Migration(
        both="""
        CREATE INDEX events_name ON events (event_name, id);
        CREATE INDEX events_conversation ON events (conversation, id);
        CREATE INDEX deliveries_state_event ON deliveries (state, event_id);
        CREATE INDEX deliveries_destination_event ON deliveries (destination, state, event_id);
        CREATE INDEX deliveries_dead_recent ON deliveries (id) WHERE state = 'dead';
        CREATE INDEX deliveries_dead_by_destination ON deliveries (destination, id)
            WHERE state = 'dead';
        CREATE INDEX deliveries_sent_at ON deliveries (finished_at) WHERE state = 'sent';
        CREATE TABLE attempts (
            id {id},
            delivery_id {bigint} NOT NULL REFERENCES deliveries(id) ON DELETE CASCADE,
            at {real} NOT NULL,
            outcome TEXT NOT NULL CHECK (outcome IN ('sent', 'retry', 'dead')),
            reason TEXT,
            detail TEXT,
            duration {real} NOT NULL
        );
        CREATE INDEX attempts_delivery ON attempts (delivery_id, id);
        """,
    ),
    # 6: answers: the relay's messages and topics per conversation and the answers going out
    # (relay/store/replies.py); a conversation's latest events use migration 5's index.
    Migration(both=replies.MIGRATION),
    # 7: deliveries_due served the claims that searched the pending rows; since migration 4
    # they read heads (heads_due), and no statement uses it, while every delivery stored,
    # retried or finished paid for its upkeep (issue 12: a leaner ingest).
    Migration(both="DROP INDEX deliveries_due;"),
    # 8: prunes read only what expired, as on PostgreSQL since 1: without these SQLite read
    # every event and every duplicate mark on file each time (seconds for a few hundred
    # thousand, on the thread ingest commits on). Both keys ascend with time, so a stored
    # event adds to the end of each: little for ingest (BENCHMARKS "bench layout").
    Migration(
        both="",
        sqlite="""
        CREATE INDEX events_received ON events (received_at);
        CREATE INDEX seen_at ON seen (seen_at);
        """,
    ),
)


# --- lanes ------------------------------------------------------------------------------------

# Claims read `heads` (migration 4): the oldest pending row of each conversation, with its due
# time and lease. Every change to which row is a conversation's oldest pending one, or to
# that row's next_at or lease, changes its head in the same transaction: ingest adds a head
# to a conversation without one (relay/store/sqlite.py, relay/store/postgres.py); an outcome
# moves it to the next pending row or drops it; revive, retry and release update it.
#
# On PostgreSQL the heads row is also the conversation's lock between transactions that
# change its head: ingest and revive upsert it (ON CONFLICT DO UPDATE locks the row even when
# its WHERE leaves it as it is), outcomes lock it first and look for the next pending row in
# a later statement (a fresh snapshot), so neither can miss a row the other just committed.
# Several heads are locked in (destination, conversation) order (then by id: rows without a
# conversation), before any deliveries row, so that two such transactions wait for each
# other instead of deadlocking; claims skip locked heads.

_HEAD_COLUMNS = "delivery_id, destination, conversation, next_at, lease_until, lease_owner"

# A head may name a row another owner leased: that owner held the lane earlier (a crashed
# process), and its rows are taken back at once.
_CLAIMABLE = """
destination = :destination AND next_at <= :now
AND (lease_until IS NULL OR lease_until <= :now OR lease_owner <> :owner)
"""

_CLAIMED_COLUMNS = """
id, event_id, destination, conversation, attempts, progress, created_at, retry_from,
(SELECT body FROM events WHERE events.id = deliveries.event_id)
"""

# SQLite's claim (relay/store/sqlite.py), three statements on the store's writing thread: the due
# heads, soonest due first (the index order: no sort however many are due) ...
CLAIM_HEADS = Statement(
    f"""
    SELECT delivery_id FROM heads WHERE {_CLAIMABLE}
    ORDER BY next_at, delivery_id LIMIT :limit
    """,  # noqa: S608 - constant fragments, no input
    rows=True,
)

LEASE_HEADS = Statement(
    """
    UPDATE heads SET lease_until = :lease_until, lease_owner = :owner
    WHERE delivery_id {in_ids}
    """
)

# ... then them and the rows behind them. Behind a head: the next `run` pending rows of its
# conversation (an index range), of which only those due without a gap go with it: a row
# waiting for its retry keeps the later ones waiting too, or they would overtake it. Of
# those, the `behind` oldest in all (a prefix of each conversation's run): about what one
# message holds, not `run` behind each of `limit` heads.
CLAIM_RUNS = Statement(
    f"""
    UPDATE deliveries SET lease_until = :lease_until, lease_owner = :owner
    WHERE id {{in_ids}} OR id IN (
        SELECT id FROM (
            SELECT f.id, max(f.next_at) OVER (PARTITION BY f.conversation ORDER BY f.id)
                AS due_at
            FROM heads AS h JOIN deliveries AS f ON f.id IN (
                SELECT d.id FROM deliveries AS d
                WHERE d.destination = h.destination AND d.conversation = h.conversation
                  AND d.state = 'pending' AND d.id > h.delivery_id
                ORDER BY d.id LIMIT :run)
            WHERE h.delivery_id {{in_ids}} AND h.conversation IS NOT NULL)
        WHERE due_at <= :now ORDER BY id LIMIT :behind)
    RETURNING {_CLAIMED_COLUMNS}
    """,  # noqa: S608 - constant fragments, no input
    rows=True,
)

# PostgreSQL's claim: the same in one statement. Heads another transaction holds (a claim,
# an outcome, an ingest of that conversation) are skipped, not waited for: due next time.
CLAIM = Statement(
    f"""
    WITH picked AS (
        SELECT delivery_id, conversation FROM heads WHERE {_CLAIMABLE}
        ORDER BY next_at, delivery_id LIMIT :limit {{skip_locked}}
    ), leased AS (
        -- Arrays, not IN (SELECT ...), here and below: with the statistics of a table
        -- that just grew (a burst), a semi-join may scan every row.
        UPDATE heads SET lease_until = :lease_until, lease_owner = :owner
        WHERE delivery_id = ANY(ARRAY(SELECT delivery_id FROM picked))
    ), behind AS (
        SELECT f.id FROM picked AS p CROSS JOIN LATERAL (
            SELECT n.id, max(n.next_at) OVER (ORDER BY n.id) AS due_at FROM (
                SELECT d.id, d.next_at FROM deliveries AS d
                WHERE d.destination = :destination AND d.conversation = p.conversation
                  AND d.state = 'pending' AND d.id > p.delivery_id
                ORDER BY d.conversation, d.id LIMIT :run) AS n
        ) AS f
        WHERE f.due_at <= :now ORDER BY f.id LIMIT :behind
    )
    UPDATE deliveries SET lease_until = :lease_until, lease_owner = :owner
    WHERE state = 'pending'
      AND id = ANY(ARRAY(SELECT delivery_id FROM picked UNION ALL SELECT id FROM behind))
    RETURNING {_CLAIMED_COLUMNS}
    """,  # noqa: S608 - constant fragments, no input
    rows=True,
)

# When the next head becomes claimable, not counting those this owner is delivering right now
# (a row behind another waits for it, not for its own time).
NEXT_DUE = Statement(
    """
    SELECT next_at FROM heads
    WHERE destination = :destination AND (lease_owner IS NULL OR lease_owner <> :owner)
    ORDER BY next_at LIMIT 1
    """,
    rows=True,
)

# Release and retry change heads first, locked in order (see above), then the deliveries:
# the order outcomes and burials take them in.
_HEADS_IN_ORDER = """
delivery_id IN (
    SELECT delivery_id FROM heads WHERE delivery_id {in_ids}
    ORDER BY destination, conversation, delivery_id {lock})
"""

RELEASE = Statement(
    "UPDATE deliveries SET lease_until = NULL, lease_owner = NULL WHERE id {in_ids}"
)
RELEASE_HEADS = Statement(
    "UPDATE heads SET lease_until = NULL, lease_owner = NULL WHERE"  # noqa: S608 - constant
    + _HEADS_IN_ORDER
)

SAVE_PROGRESS = Statement("UPDATE deliveries SET progress = :progress WHERE id = :id")

# Outcomes change pending rows only: an earlier lane holder's late outcome (its lease ran out
# and another instance finished the row meanwhile) must not turn a sent row dead, which `dead
# retry` would send again, nor put a failure on a delivered one. The rows are found by id
# ({unindexed}: see relay/store/sql.py), however many others are pending.
MARK_SENT = Statement(
    """
    UPDATE deliveries SET state = 'sent', finished_at = :now, lease_until = NULL,
        lease_owner = NULL
    WHERE id {in_ids} AND {unindexed}state = 'pending'
    """
)

BURY = Statement(
    """
    UPDATE deliveries SET state = 'dead', attempts = attempts + 1, finished_at = :now,
        reason = :reason, detail = :detail, lease_until = NULL, lease_owner = NULL
    WHERE id {in_ids} AND {unindexed}state = 'pending'
    """
)

RETRY_LATER = Statement(
    """
    UPDATE deliveries SET attempts = attempts + 1, next_at = :next_at, reason = :reason,
        detail = :detail, lease_until = NULL, lease_owner = NULL
    WHERE id {in_ids} AND {unindexed}state = 'pending'
    """
)
RETRY_HEADS = Statement(
    "UPDATE heads SET next_at = :next_at, lease_until = NULL, lease_owner = NULL WHERE"  # noqa: S608 - constant
    + _HEADS_IN_ORDER
)

# After MARK_SENT or BURY (SQLite): the finished rows are no longer heads, and each of their
# conversations left without one gets its next pending row (deliveries_order: one index
# lookup each). PostgreSQL does the same in one statement (relay/store/postgres.py).
DROP_HEADS = Statement("DELETE FROM heads WHERE delivery_id {in_ids}")
NEXT_HEADS = Statement(
    f"""
    INSERT INTO heads ({_HEAD_COLUMNS})
    SELECT n.id, n.destination, n.conversation, n.next_at, n.lease_until, n.lease_owner
    FROM deliveries AS n
    WHERE n.id IN (
        SELECT (SELECT p.id FROM deliveries AS p
                WHERE p.destination = c.destination AND p.conversation = c.conversation
                  AND p.state = 'pending'
                ORDER BY p.id LIMIT 1)
        FROM (SELECT DISTINCT destination, conversation FROM deliveries
              WHERE id {{in_ids}} AND conversation IS NOT NULL) AS c
        WHERE NOT EXISTS (
            SELECT 1 FROM heads AS h
            WHERE h.destination = c.destination AND h.conversation = c.conversation))
    """  # noqa: S608 - constant fragments, no input
)

# A conversation's head becomes the given row if it is older than the head it has, or the
# only one; the existing head is locked either way (see above). Ingest (PostgreSQL) and
# revive end their head upserts with this.
HEAD_UPSERT_TAIL = """
ON CONFLICT (destination, conversation) DO UPDATE SET
    delivery_id = excluded.delivery_id, next_at = excluded.next_at,
    lease_until = excluded.lease_until, lease_owner = excluded.lease_owner
WHERE excluded.delivery_id < heads.delivery_id
"""

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

DEAD_IDS = Statement("SELECT id FROM deliveries WHERE state = 'dead' ORDER BY id", rows=True)

REVIVE = Statement(
    """
    UPDATE deliveries SET state = 'pending', next_at = :now, attempts = 0, retry_from = :now,
        finished_at = NULL
    WHERE id {in_ids} AND {unindexed}state = 'dead'
    """
)

# After REVIVE, in a fresh snapshot (on PostgreSQL: one that sees what an outcome holding a
# head committed meanwhile): the oldest revived row of each conversation (every one without
# a conversation) becomes its head unless an older row is pending there already.
REVIVE_HEADS = Statement(
    f"""
    INSERT INTO heads ({_HEAD_COLUMNS})
    SELECT d.id, d.destination, d.conversation, d.next_at, d.lease_until, d.lease_owner
    FROM deliveries AS d
    WHERE d.id IN (
        SELECT min(id) FROM deliveries
        WHERE id {{in_ids}} AND {{unindexed}}state = 'pending' AND conversation IS NOT NULL
        GROUP BY destination, conversation
        UNION ALL
        SELECT id FROM deliveries
        WHERE id {{in_ids}} AND {{unindexed}}state = 'pending' AND conversation IS NULL)
      AND NOT EXISTS (SELECT 1 FROM heads AS h WHERE h.delivery_id = d.id)
    ORDER BY d.destination, d.conversation
    """  # noqa: S608 - constant fragments, no input
    + HEAD_UPSERT_TAIL
)

# BURY_DESTINATION between these two: first its heads are locked, in order as everywhere;
# last they go, in a fresh snapshot that sees any head an outcome moved meanwhile. Only
# heads of rows no longer pending: rows another instance stored (a new conversation: no
# head to wait for) or revived after BURY_DESTINATION looked are still pending, and keep
# theirs.
LOCK_DESTINATION_HEADS = Statement(
    """
    SELECT delivery_id FROM heads WHERE destination = :destination
    ORDER BY conversation, delivery_id {lock}
    """,
    rows=True,
)
DROP_DESTINATION_HEADS = Statement(
    """
    DELETE FROM heads WHERE destination = :destination AND NOT EXISTS (
        SELECT 1 FROM deliveries AS d WHERE d.id = heads.delivery_id AND d.state = 'pending')
    """
)

BURY_DESTINATION = Statement(
    """
    UPDATE deliveries SET state = 'dead', finished_at = :now, reason = :reason,
        detail = 'the destination is no longer in the config', lease_until = NULL,
        lease_owner = NULL
    WHERE destination = :destination AND state = 'pending'
    """
)

# Read by every /metrics scrape and the console's lanes, so it must not read the pending
# rows themselves (a look at each took 0.13 s with 100 000 pending and 0.9 s with 1 000 000
# on SQLite). The destinations with pending rows are those with heads; each one's count is
# a range of an index that holds the answer (still a count, but of index entries: 12 ms and
# 0.18 s); its oldest pending row is its lowest pending id, the lowest of its heads' (each
# head is its conversation's lowest), as ids ascend with arrival.
BACKLOG = Statement(
    """
    SELECT h.destination,
        (SELECT count(*) FROM deliveries AS d
         WHERE d.destination = h.destination AND d.state = 'pending'),
        (SELECT d.created_at FROM deliveries AS d WHERE d.id = h.oldest)
    FROM (SELECT destination, min(delivery_id) AS oldest FROM heads GROUP BY destination) AS h
    ORDER BY h.destination
    """,
    rows=True,
)

# Prunes delete at most :chunk rows a transaction (relay/store/shared.py), so that ingest
# waits for one chunk at a time, not for a day's worth. Marks an ingest transaction is
# re-using right now are skipped, not waited for: they are either fresh again or gone next
# time.
PRUNE_SEEN = Statement(
    """
    DELETE FROM seen WHERE body_hash IN (
        SELECT body_hash FROM seen WHERE seen_at < :before LIMIT :chunk {skip_locked})
    """
)

PRUNE_EVENTS = Statement(
    """
    DELETE FROM events WHERE id IN (
        SELECT e.id FROM events AS e WHERE e.received_at < :before AND NOT EXISTS (
            SELECT 1 FROM deliveries AS d WHERE d.event_id = e.id AND d.state <> 'sent')
        LIMIT :chunk)
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
