"""Where the pipeline stands: positions, lag and parked customers of the relay and every
projection — computed here only, for ``GET /v1/projections``, ``GET /readyz``, ``clientele
projections status``, the Prometheus gauges and read-your-writes (``X-Min-Position``) — and
the Kafka consumer groups' offsets against the topic (``clientele consumers status``)."""

from __future__ import annotations

from collections.abc import Iterable
from functools import partial
from typing import Any, Protocol

from consumers.catch_up import CATCH_UP_EVENTS
from consumers.consumer_offsets import groups, losses, stored
from consumers.embedded import EmbeddedRunner
from consumers.relay_tables import checkpoint, parked_summary, parking_lot
from consumers.store_feed import StoreFeed
from infra import feed_queries
from infra.kafka_topics import TopicInspector
from infra.parking import Parked
from infra.readstore import ReadStore
from infra.store import FEED_TOPICS, EventStore
from projections.framework import Binding, Projector, positions, versions
from projections.registry import by_name

# At most this many events are looked at to see whether only parked customers lie between
# a read model's position and the one a client waits for.
MAX_HELD_SCAN = 1000
GROUP_PREFIX = "clientele-"
DEFAULT_GROUP = f"{GROUP_PREFIX}projections"  # `clientele consume` without --projection


class Pipeline(Protocol):
    """What the status is read from (``bootstrap.Services``)."""

    @property
    def store(self) -> EventStore: ...
    @property
    def feed(self) -> StoreFeed: ...
    @property
    def read_store(self) -> ReadStore: ...
    @property
    def projectors(self) -> list[Projector]: ...
    @property
    def runner(self) -> EmbeddedRunner | None: ...
    @property
    def embedded(self) -> bool: ...
    @property
    def store_db(self) -> ReadStore: ...


def pipeline_report(svc: Pipeline) -> dict[str, Any]:
    """``{"head", "mode", "state", "catch_up"?, "relay"?: {"position", "lag", "parked"},
    "projections": [{"name", "position", "lag", "state", "parked"}]}``.

    ``lag`` counts exactly (never capped) the events a stage is fed after its position:
    customer events for the relay and projections fed from ``customer.events``, segment
    events too for those fed in log order. ``state`` is ``"catching_up"`` while the lag is at
    least :data:`~consumers.catch_up.CATCH_UP_EVENTS`, else ``"live"``; the report's ``state``
    is ``"catching_up"`` while any projection is. ``catch_up`` (embedded mode: the in-process
    runner) is :meth:`~consumers.catch_up.CatchUpProgress.to_dict`. ``parked`` is ``{"count",
    "oldest": {"customer_id", "version", "position", "size", "reason", "parked_at",
    "attempts", "retry_at", "age_seconds"} | None}``. ``relay`` only in full mode.
    """
    feed = svc.feed
    reached = positions(svc.read_store)
    counted: dict[tuple[int, bool], int] = {}

    def lag(position: int, customers_only: bool) -> int:
        key = (position, customers_only)
        if key not in counted:
            counted[key] = feed.pending(position, customers_only=customers_only)
        return counted[key]

    report: dict[str, Any] = {"head": feed.head(), "mode": "embedded" if svc.embedded else "kafka"}
    if svc.runner is not None:
        report["catch_up"] = svc.runner.progress().to_dict()
    if not svc.embedded:
        published = checkpoint(svc.store_db)
        report["relay"] = {
            "position": published,
            "lag": lag(published, True),
            "parked": parked_summary(svc.store_db),
        }
    rows = []
    for projector in svc.projectors:
        position = reached.get(projector.name, 0)
        with svc.read_store.snapshot(Binding.live(projector).tables) as tx:
            parked = projector.parking.summary(tx)
        behind = lag(position, not projector.log_order)
        rows.append(
            {
                "name": projector.name,
                "position": position,
                "lag": behind,
                "state": "catching_up" if behind >= CATCH_UP_EVENTS else "live",
                "parked": parked,
            }
        )
    report["projections"] = rows
    report["state"] = (
        "catching_up" if any(row["state"] == "catching_up" for row in rows) else "live"
    )
    return report


def behind(svc: Pipeline, names: Iterable[str], wanted: int) -> dict[str, int]:
    """The projections among ``names`` that have not yet everything they are fed up to
    position ``wanted``: name -> position reached.

    A projection is never fed some of the store's events (one fed from ``customer.events``
    sees no segment events; none sees a campaign's own events): it has reached a recorded
    ``wanted`` once no event it is fed lies in between.
    """
    at = positions(svc.read_store)
    in_log_order = {p.name for p in svc.projectors if p.log_order}
    result: dict[str, int] = {}
    for name in names:
        position = at.get(name, 0)
        if position >= wanted:
            continue
        if wanted <= svc.store.head():
            following = _next_fed(svc, name in in_log_order, position)
            if following is None or following > wanted:
                continue
        result[name] = position
    return result


def customer_behind(
    svc: Pipeline, names: Iterable[str], customer_id: str, needed: int
) -> dict[str, int]:
    """The projections among ``names`` fed by customer (not in log order) that have not yet
    applied version ``needed`` of ``customer_id``: name -> the version they applied.

    ``needed`` is the customer's version at the position a reader waits for
    (:meth:`~infra.store.EventStore.version_at`, asked once per wait: the versions up to a
    written event are all committed when its write is acknowledged). A projection's position
    is the highest it applied; with several Kafka partitions it can pass an event of this
    customer still unread on another partition. A customer's events share one partition, in
    order, so its applied version (``{name}_versions``) is what tells. What another
    customer's event changes in this one's rows (an erasure blanking the copies others hold)
    is not covered.
    """
    by_customer = [p for p in map(by_name, names) if not p.log_order]
    if not by_customer or needed == 0:
        return {}
    tables = {t: t for p in by_customer for t in Binding.live(p).tables.values()}
    with svc.read_store.snapshot(tables) as tx:
        applied = {p.name: versions(tx, p, [customer_id]).get(customer_id, 0) for p in by_customer}
    return {name: version for name, version in applied.items() if version < needed}


def _next_fed(svc: Pipeline, log_order: bool, after: int) -> int | None:
    """The position of the first event after ``after`` that a projection is fed (None: none
    yet): from the store's log (:data:`FEED_TOPICS`) in log order, else customer events."""
    if log_order:
        linked = feed_queries.in_log_order(svc.store, after, 1, FEED_TOPICS)
        return linked[0][0].id if linked else None
    following = svc.store.customer_notifications(after, 1)
    return following[0].id if following else None


def held_customers(
    svc: Pipeline, names: Iterable[str], customer_id: str | None = None
) -> dict[str, tuple[str, Parked]]:
    """Customers (or only ``customer_id``) held back by the relay or by the projections
    ``names``: customer id -> (``"relay"`` or the projection, where it is held)."""
    held: dict[str, tuple[str, Parked]] = {}
    for name in names:
        projector = by_name(name)
        with svc.read_store.snapshot(Binding.live(projector).tables) as tx:
            for parked in projector.parking.listing(tx, customer_id=customer_id):
                held.setdefault(parked.customer_id, (name, parked))
    if not svc.embedded:  # its table exists: ``migrate`` made it
        with svc.store_db.transaction() as tx:
            for parked in parking_lot().listing(tx, customer_id=customer_id):
                held[parked.customer_id] = ("relay", parked)
    return held


def only_held_behind(svc: Pipeline, names: Iterable[str], after: int, until: int) -> bool:
    """Whether the projections ``names`` stopped short of ``until`` (at ``after``) only for
    held customers: every customer event at positions ``after < p <= until`` belongs to a
    customer held by the relay or by one of them.

    Those fed in log order (``Projector.log_order``) pass parked customers' events like any
    other: if one of them is behind, it is only behind.
    """
    names = list(names)
    if any(p.log_order for p in svc.projectors if p.name in names):
        return False
    held = held_customers(svc, names)
    if not held:
        return False
    events = svc.store.customer_notifications(after, MAX_HELD_SCAN)
    if len(events) == MAX_HELD_SCAN and events[-1].id < until:
        return False  # too far behind to say
    return all(str(n.originator_id) in held for n in events if n.id <= until)


def consumer_groups(svc: Pipeline, inspector: TopicInspector, topic: str) -> list[dict[str, Any]]:
    """Every consumer group with offsets stored for ``topic``: ``[{"group", "topic",
    "projections", "partitions": [{"partition", "stored", "end"}], "lag", "position", "head",
    "behind", "parked", "stuck", "reasons"}]``.

    ``lag``: records between the stored offsets and the topic's ends (a partition without a
    stored offset counts whole); ``position``: the slowest of the group's projections in the
    store, ``behind`` exactly how many events it is fed after it, ``head`` the store's newest
    position, ``parked`` its parked customers. ``stuck`` when the offsets no longer count in
    the topic (``reasons`` say why: the broker lost it, or the topic is missing); the group's
    consumers reset themselves from the store, `clientele consumers reset` does it by hand.
    """
    state = inspector.state(topic)
    report = pipeline_report(svc)
    rows = {row["name"]: row for row in report["projections"]}
    with svc.read_store.transaction() as tx:
        found = {group: stored(tx, group, topic) for group, t in groups(tx) if t == topic}
    result = []
    for group, offsets in sorted(found.items()):
        fed = [rows[name] for name in group_projections(svc.projectors, group) if name in rows]
        numbers = sorted(set(state.end_offsets) | set(offsets.offsets))
        reasons = losses(
            offsets, state, state.end_offsets, missing=partial(inspector.missing, topic)
        )
        if not state.exists:
            reasons = [f"topic {topic!r} is missing (`clientele relay` creates it)"]
        partitions = [
            {"partition": p, "stored": offsets.offsets.get(p), "end": state.end_offsets.get(p)}
            for p in numbers
        ]
        lag = sum(max((row["end"] or 0) - (row["stored"] or 0), 0) for row in partitions)
        result.append(
            {
                "group": group,
                "topic": topic,
                "projections": [row["name"] for row in fed],
                "partitions": partitions,
                "lag": lag,
                "position": min((row["position"] for row in fed), default=0),
                "head": report["head"],
                "behind": max((row["lag"] for row in fed), default=0),
                "parked": sum(row["parked"]["count"] for row in fed),
                "stuck": bool(reasons),
                "reasons": reasons,
            }
        )
    return result


def group_projections(projectors: Iterable[Projector], group: str) -> list[str]:
    """The projections a consumer group feeds from Kafka: ``clientele-projections`` (plain
    ``clientele consume``) every one not fed in log order, ``clientele-NAME`` only NAME."""
    fed = [p.name for p in projectors if not p.log_order]
    if group == DEFAULT_GROUP:
        return fed
    name = group.removeprefix(GROUP_PREFIX)
    return [name] if name in fed else []
