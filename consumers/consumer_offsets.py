"""A consumer group's stored offsets, which topic they belong to, and moving them safely.

Projection consumers keep their offsets with the read models (``consumer_offsets``) and, per
partition, the cluster id and topic id of the topic those offsets count in
(``consumer_topics``). A stored offset is worthless once the broker lost the topic: an offset
beyond the partition's end, a partition that no longer exists, another topic id or cluster
id. Skipping to where the offset points would skip events, and reading the topic from its
beginning would apply its events out of order (a customer's first event on the new topic may
follow several lost ones). So the group is *reset*: the snapshot of the topic's end offsets is
taken first, then its read models are caught up from the store (the source of truth, through
:func:`consumers.embedded.apply_from_store`, idempotent on (customer, version)), then the
offsets move to that snapshot, with the topic's identity. Every record below the snapshot was
published before it, so its event is at or below the store head the catch-up read to.

The consumers do this themselves (:mod:`consumers.kafka_projection`); ``clientele consumers
reset`` does it for an operator.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from consumers.embedded import apply_from_store
from consumers.store_feed import StoreFeed
from infra.kafka_topics import Identity, TopicState
from infra.read_tx import Tx
from infra.readstore import ReadStore
from projections.framework import Binding, Projector

IDENTITIES = """CREATE TABLE IF NOT EXISTS consumer_topics (
    consumer_group TEXT NOT NULL,
    topic TEXT NOT NULL,
    partition INTEGER NOT NULL,
    cluster_id TEXT,
    topic_id TEXT,
    PRIMARY KEY (consumer_group, topic, partition))"""
BATCH = 2000


@dataclass
class Stored:
    """A group's offsets on a topic (partition -> next offset) and their topic identities."""

    offsets: dict[int, int] = field(default_factory=dict)
    identities: dict[int, Identity] = field(default_factory=dict)


def ensure_tables(read_store: ReadStore) -> None:
    """Create ``consumer_topics`` (idempotent; ``consumer_offsets`` comes with the framework)."""
    with read_store.transaction() as tx:
        tx.raw(IDENTITIES)


def stored(tx: Tx, group: str, topic: str) -> Stored:
    """What ``group`` stored for ``topic``."""
    offsets = tx.fetchall(
        "SELECT partition, next_offset FROM consumer_offsets "
        "WHERE consumer_group = ? AND topic = ?",
        (group, topic),
    )
    identities = tx.fetchall(
        "SELECT partition, cluster_id, topic_id FROM consumer_topics "
        "WHERE consumer_group = ? AND topic = ?",
        (group, topic),
    )
    return Stored(
        {int(p): int(o) for p, o in offsets},
        {int(p): Identity(c, t) for p, c, t in identities},
    )


def groups(tx: Tx) -> list[tuple[str, str]]:
    """Every (group, topic) with stored offsets."""
    rows = tx.fetchall(
        "SELECT DISTINCT consumer_group, topic FROM consumer_offsets ORDER BY consumer_group, topic"
    )
    return [(str(g), str(t)) for g, t in rows]


def losses(
    group: Stored,
    state: TopicState,
    partitions: Iterable[int],
    positions: dict[int, int] | None = None,
    *,
    missing: Callable[[dict[int, int]], set[int]] | None = None,
) -> list[str]:
    """Why the stored offsets of ``partitions`` (or the ``positions`` a running consumer
    reached) no longer count in the topic ``state`` describes (empty: they do, or the topic
    is missing and nothing can be said yet). ``missing`` confirms offsets beyond a reported
    end (see :meth:`infra.kafka_topics.TopicInspector.missing`); without it they count as lost.
    """
    if not state.exists:
        return []
    reasons: list[str] = []
    gone = sorted(p for p in group.offsets if p >= state.partitions)
    if gone:
        reasons.append(
            f"offsets stored for partition {gone[-1]}, the topic has {state.partitions} partitions"
        )
    beyond: dict[int, int] = {}
    for partition in sorted(partitions):
        identity = group.identities.get(partition)
        why = identity.differs(state) if identity is not None else None
        if why is not None:
            reasons.append(why)
            continue
        offset = (positions or {}).get(partition, group.offsets.get(partition))
        end = state.end_offsets.get(partition)
        if offset is not None and end is not None and offset > end:
            beyond[partition] = offset
    lost = set(beyond) if missing is None or not beyond else missing(beyond)
    reasons += [
        f"partition {p}: offset {beyond[p]} is beyond its end {state.end_offsets[p]}"
        for p in sorted(lost)
    ]
    return list(dict.fromkeys(reasons))


def record(tx: Tx, group: str, state: TopicState, offsets: dict[int, int]) -> None:
    """Store ``offsets`` (partition -> next offset) of ``group`` on ``state.topic`` with the
    topic's identity; forget offsets of partitions the topic no longer has."""
    topic = state.topic
    tx.executemany(
        "INSERT INTO consumer_offsets (consumer_group, topic, partition, next_offset) "
        "VALUES (?, ?, ?, ?) ON CONFLICT (consumer_group, topic, partition) "
        "DO UPDATE SET next_offset = excluded.next_offset",
        [(group, topic, p, o) for p, o in sorted(offsets.items())],
    )
    remember(tx, group, state, offsets)
    for table in ("consumer_offsets", "consumer_topics"):
        tx.execute(
            f"DELETE FROM {table} WHERE consumer_group = ? AND topic = ? AND partition >= ?",
            (group, topic, state.partitions),
        )


def remember(tx: Tx, group: str, state: TopicState, partitions: Iterable[int]) -> None:
    """Record which topic the offsets of ``partitions`` count in (``state``'s identity)."""
    tx.executemany(
        "INSERT INTO consumer_topics (consumer_group, topic, partition, cluster_id, topic_id) "
        "VALUES (?, ?, ?, ?, ?) ON CONFLICT (consumer_group, topic, partition) "
        "DO UPDATE SET cluster_id = excluded.cluster_id, topic_id = excluded.topic_id",
        [(group, state.topic, p, state.cluster_id, state.topic_id) for p in sorted(partitions)],
    )


def catch_up_from_store(
    feed: StoreFeed, read_store: ReadStore, projectors: Sequence[Projector], after: int = 0
) -> int:
    """Apply every fed event after position ``after`` that ``projectors`` lack, up to the
    store's head (events they have are skipped by version); returns the events read."""
    bindings = [Binding.live(p) for p in projectors]
    total = 0
    while True:
        with read_store.transaction() as tx:
            envelopes = apply_from_store(tx, feed, bindings, after, BATCH, by_position=False)
        total += len(envelopes)
        if len(envelopes) < BATCH:
            return total
        after = envelopes[-1].position


def reset(
    feed: StoreFeed,
    read_store: ReadStore,
    projectors: Sequence[Projector],
    *,
    group: str,
    state: TopicState,
    partitions: Iterable[int],
    after: int = 0,
) -> int:
    """Catch ``projectors`` up from the store after position ``after``, then move ``group``'s
    offsets of ``partitions`` to ``state.end_offsets`` — a look taken BEFORE this call (see
    the module docstring). Returns the events read from the store."""
    applied = catch_up_from_store(feed, read_store, projectors, after)
    wanted = {p: state.end_offsets[p] for p in partitions if p in state.end_offsets}
    with read_store.transaction() as tx:
        record(tx, group, state, wanted)
    return applied
