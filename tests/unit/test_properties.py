"""Property-based tests: random command sequences against the real service on the memory store.

* folding a customer's stored events from scratch equals the (snapshot-assisted) loaded state,
  and time travel to every version equals the fold of that prefix;
* invariants hold after every sequence (unique live emails, tag rules, points, statuses, a
  gap-free notification log);
* random, mostly invalid input only ever yields domain errors, never a crash.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID, uuid4

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from commands import messages as m
from commands.service import CommandService, Context
from domain.customer import Customer
from domain.errors import DomainError
from domain.values import MAX_TAGS_PER_CUSTOMER, Status
from infra.store import EventStore

SLOTS = 4
names = st.sampled_from(["Ada", " Bob  Smith ", "Chloé", "李雷"])
emails = st.sampled_from(["a@example.com", "B@Example.com", "c@example.org", None])
phones = st.sampled_from(["+4930901820", "030 901821", None])
tags = st.sampled_from(["VIP", "vip", "Gold Member", "newsletter", "数据"])
slot = st.integers(0, SLOTS - 1)

step = st.one_of(
    st.tuples(st.just("register"), slot, names, emails, phones),
    st.tuples(st.just("update"), slot, names, emails, phones),
    st.tuples(st.just("tag"), slot, tags),
    st.tuples(st.just("untag"), slot, tags),
    st.tuples(st.just("contact"), slot, st.sampled_from(["email", "phone", "visit"])),
    st.tuples(
        st.just("purchase"),
        slot,
        st.sampled_from(["o1", "o2", "o3"]),
        st.sampled_from(["1", "2.50"]),
    ),
    st.tuples(st.just("feedback"), slot, st.integers(0, 10), st.integers(1, 5)),
    st.tuples(
        st.just("consent"), slot, st.sampled_from(["email_marketing", "profiling"]), st.booleans()
    ),
    st.tuples(st.just("lifecycle"), slot, st.sampled_from(["new", "active", "loyal", "at_risk"])),
    st.tuples(st.just("churn"), slot),
    st.tuples(st.just("reactivate"), slot),
    st.tuples(st.just("merge"), slot, slot),
    st.tuples(st.just("unmerge"), slot, slot),
    st.tuples(st.just("erase"), slot),
    st.tuples(st.just("earn"), slot, st.integers(1, 50)),
    st.tuples(st.just("redeem"), slot, st.integers(1, 50)),
)


def to_command(item: tuple[Any, ...], ids: list[UUID | None]) -> m.Command | None:
    kind, index, *rest = item
    target = ids[index]
    if kind == "register":
        ids[index] = uuid4()
        return m.RegisterCustomer(
            customer_id=ids[index], name=rest[0], email=rest[1], phone=rest[2]
        )
    if target is None:
        return None
    other = ids[rest[0]] if kind in ("merge", "unmerge") else None
    build: dict[str, Any] = {
        "update": lambda: m.UpdateProfile(
            customer_id=target, changes={"name": rest[0], "email": rest[1], "phone": rest[2]}
        ),
        "tag": lambda: m.TagCustomer(customer_id=target, tag=rest[0]),
        "untag": lambda: m.UntagCustomer(customer_id=target, tag=rest[0]),
        "contact": lambda: m.RecordContact(
            customer_id=target, channel=rest[0], direction="inbound"
        ),
        "purchase": lambda: m.RecordPurchase(
            customer_id=target, order_id=rest[0], amount=rest[1], currency="EUR"
        ),
        "feedback": lambda: m.RecordFeedback(customer_id=target, nps=rest[0], csat=rest[1]),
        "consent": lambda: m.SetConsent(customer_id=target, purpose=rest[0], granted=rest[1]),
        "lifecycle": lambda: m.ChangeLifecycleStage(customer_id=target, stage=rest[0]),
        "churn": lambda: m.ChurnCustomer(customer_id=target),
        "reactivate": lambda: m.ReactivateCustomer(customer_id=target),
        "merge": lambda: other and m.MergeCustomers(customer_id=target, duplicate_id=other),
        "unmerge": lambda: other and m.UnmergeCustomers(customer_id=target, duplicate_id=other),
        "erase": lambda: m.EraseCustomer(customer_id=target),
        "earn": lambda: m.EarnPoints(customer_id=target, points=rest[0]),
        "redeem": lambda: m.RedeemPoints(customer_id=target, points=rest[0]),
    }
    command: m.Command | None = build[kind]()
    return command


def fold(store: EventStore, customer_id: UUID, upto: int | None = None) -> Customer:
    aggregate: Any = None
    for event in store.customer_events(customer_id):
        if upto is not None and event.originator_version > upto:
            break
        aggregate = event.mutate(aggregate)
    assert isinstance(aggregate, Customer)
    return aggregate


def check_invariants(store: EventStore, customers: list[Customer]) -> None:
    live_emails = [c.email for c in customers if c.is_live and c.email is not None]
    assert len(live_emails) == len(set(live_emails)), "a live email is owned twice"
    for c in customers:
        assert c.status in {s.value for s in Status}
        assert len(c.tags) == len(set(c.tags)) <= MAX_TAGS_PER_CUSTOMER
        assert all(t == t.lower() and " " not in t for t in c.tags)
        assert c.points >= 0 and c.contacts_count >= 0
        assert (c.merged_into is not None) == (c.status == Status.MERGED)
        if c.status == Status.ERASED:
            assert c.name is None and c.email is None and c.phone is None
        elif c.status != Status.MERGED:
            assert c.name
    head = store.head()
    assert [n.id for n in store.notifications(0, head + 1)] == list(range(1, head + 1))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(step, min_size=1, max_size=40))
def test_random_valid_sequences_fold_back_and_keep_invariants(items: list[tuple[Any, ...]]) -> None:
    store = EventStore("memory://", snapshot_interval=4)
    service = CommandService(store, default_region="DE", index_key="k")
    ctx = Context(actor="hypothesis")
    ids: list[UUID | None] = [None] * SLOTS
    for item in items:
        command = to_command(item, ids)
        if command is None:
            continue
        try:
            service.execute(command, ctx)
        except DomainError:
            if isinstance(command, m.RegisterCustomer):
                ids[item[1]] = None
    customers = []
    for customer_id in {i for i in ids if i is not None}:
        loaded = store.customer(customer_id)
        folded = fold(store, customer_id)
        assert vars(loaded) == vars(folded)
        for version in range(1, loaded.version + 1):
            assert vars(store.customer(customer_id, version=version)) == vars(
                fold(store, customer_id, version)
            )
        customers.append(loaded)
    check_invariants(store, customers)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=8,
)
field_names = st.sampled_from(
    [
        "customer_id",
        "name",
        "email",
        "phone",
        "tag",
        "order_id",
        "amount",
        "currency",
        "nps",
        "csat",
        "purpose",
        "granted",
        "stage",
        "channel",
        "direction",
        "kind",
        "points",
        "duplicate_id",
        "attributes",
        "items",
        "occurred_at",
        "expected_version",
        "changes",
    ]
)
garbage = st.fixed_dictionaries(
    {"type": st.sampled_from([*m.COMMAND_TYPES, "nope"])},
    optional={"customer_id": st.just("KNOWN")},
).flatmap(
    lambda base: st.dictionaries(field_names, json_values, max_size=6).map(
        lambda extra: {**extra, **base}
    )
)


@settings(max_examples=400, deadline=None)
@given(st.lists(garbage, min_size=1, max_size=10))
def test_random_input_gives_domain_errors_never_crashes(docs: list[dict[str, Any]]) -> None:
    store = EventStore("memory://")
    service = CommandService(store, default_region="DE", index_key="k")
    ctx = Context(actor="fuzz")
    known = service.execute(m.RegisterCustomer(name="Known"), ctx).customer_id
    for doc in docs:
        if doc.get("customer_id") == "KNOWN":
            doc["customer_id"] = str(known)
        try:
            command = m.parse_command(doc)
            outcome = service.execute(command, ctx)
        except DomainError as error:
            assert error.code and error.message
        else:
            assert outcome.status == "accepted"
    check_invariants(store, [store.customer(known)] if known else [])
