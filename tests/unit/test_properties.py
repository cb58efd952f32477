"""Property-based tests: random command sequences against the real service on the memory store.

* folding a customer's stored events from scratch equals the (snapshot-assisted) loaded state,
  and time travel to every version equals the fold of that prefix;
* a customer the command service keeps between commands, brought up to date after another
  writer's commands, equals a fresh load;
* invariants hold after every sequence (unique live emails, tag rules, points, statuses, a
  gap-free notification log);
* random, mostly invalid input only ever yields domain errors, never a crash.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID, uuid4

import orjson
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, invariant, multiple, rule

from commands import messages as m
from commands.service import CommandService, Context
from domain.customer import Customer
from domain.errors import DomainError
from domain.values import MAX_TAGS_PER_CUSTOMER, Status
from infra.bulk_load import load_many
from infra.envelope import Envelope
from infra.store import EventStore
from projections import audit_history, profile_fold

names = st.sampled_from(["Ada", " Bob  Smith ", "Chloé", "李雷"])
emails = st.sampled_from(["a@example.com", "B@Example.com", "c@example.org", None])
phones = st.sampled_from(["+4930901820", "030 901821", None])
tags = st.sampled_from(["VIP", "vip", "Gold Member", "newsletter", "数据"])


def fold(store: EventStore, customer_id: UUID, upto: int | None = None) -> Customer:
    aggregate: Any = None
    for stored in store.customer_events(customer_id):
        if upto is not None and stored.originator_version > upto:
            break
        aggregate = stored.mutate(aggregate)
    assert isinstance(aggregate, Customer)
    return aggregate


def assert_profile_matches(store: EventStore, customer: Customer) -> None:
    """The read-side fold of the envelopes agrees with the aggregate on every shared fact."""
    state = profile_fold.empty(customer.id)
    for position, stored in store.history(customer.id):
        profile_fold.apply(state, Envelope.from_event(stored, position))
    assert state["purchases"] == profile_fold.summarise_orders(
        state["orders"]
    )  # running == recount
    assert list(state["purchases"]["total"]) == sorted(state["purchases"]["total"])
    shown = profile_fold.render(state)
    expected = {
        "name": customer.name,
        "email": customer.email,
        "phone": customer.phone,
        "tags": customer.tags,
        "consents": customer.consents,
        "lifecycle_stage": customer.lifecycle_stage,
        "status": customer.status,
        "merged_into": customer.merged_into,
        "points": customer.points,
        "tier": customer.tier,
        "version": customer.version,
        "feedback": {"nps": customer.nps, "csat": customer.csat},
    }
    assert {k: shown[k] for k in expected} == expected
    assert shown["purchases"]["count"] == len(customer.purchases)
    totals = {k: Decimal(v) for k, v in shown["purchases"]["total"].items()}
    assert totals == customer.purchase_totals()
    assert shown["contacts"]["count"] == customer.contacts_count
    assert shown["position"] == store.position_of(customer.id, customer.version)


def check_invariants(store: EventStore, customers: list[Customer]) -> None:
    live_emails = [c.email for c in customers if c.is_live and c.email is not None]
    assert len(live_emails) == len(set(live_emails)), "a live email is owned twice"
    for c in customers:
        assert c.status in {s.value for s in Status}
        assert len(c.tags) == len(set(c.tags)) <= MAX_TAGS_PER_CUSTOMER
        assert all(t == t.lower() and " " not in t for t in c.tags)
        assert c.points >= 0 and c.contacts_count >= 0
        if c.status == Status.MERGED:
            assert c.merged_into is not None
        elif c.merged_into is not None:  # an erased duplicate keeps its link for the audit
            assert c.status == Status.ERASED
        if c.status == Status.ERASED:
            assert c.name is None and c.email is None and c.phone is None
        elif c.status != Status.MERGED:
            assert c.name
    by_id = {str(c.id): c for c in customers}
    for c in customers:  # erasure reaches every copy: no merge chain ends at an erased record
        survivor = c
        while survivor.status == Status.MERGED and survivor.merged_into in by_id:
            survivor = by_id[survivor.merged_into]
        if c.status == Status.MERGED:
            assert survivor.is_live, f"{c.id} is merged into erased {survivor.id}"
    head = store.head()
    assert [n.id for n in store.notifications(0, head + 1)] == list(range(1, head + 1))


def _full_view(state: dict[str, Any]) -> dict[str, Any]:
    """Reference for the audit diff: every rendered field, dicts flattened one level."""
    flat: dict[str, Any] = {}
    for key, value in profile_fold.render(state).items():
        if key not in ("version", "position", "updated_at"):
            flat.update(
                {f"{key}.{k}": v for k, v in value.items()}
                if isinstance(value, dict)
                else {key: value}
            )
    return flat


def assert_audit_diffs_match_full_views(store: EventStore, customer_id: UUID) -> None:
    """The audit's diff (which flattens only what changed) equals diffing complete views."""
    state = profile_fold.empty(customer_id)
    for position, stored in store.history(customer_id):
        before = orjson.loads(orjson.dumps(state))
        profile_fold.apply(state, Envelope.from_event(stored, position))
        old, new = _full_view(before), _full_view(state)
        expected = {
            k: [old.get(k), new.get(k)] for k in sorted(old | new) if old.get(k) != new.get(k)
        }
        assert orjson.dumps(audit_history.diff(before, state)) == orjson.dumps(expected)


class CustomerLifeMachine(RuleBasedStateMachine):
    """Random valid command sequences over a handful of customers, checked after every step."""

    customers = Bundle("customers")

    def __init__(self) -> None:
        super().__init__()
        self.store = EventStore("memory://", snapshot_interval=4)
        self.service = CommandService(self.store, default_region="DE", index_key="k")
        self.elsewhere = CommandService(self.store, default_region="DE", index_key="k")
        self.ctx = Context(actor="hypothesis")
        self.known: set[UUID] = set()

    def run(self, command: m.Command, service: CommandService | None = None) -> bool:
        try:
            (service or self.service).execute(command, self.ctx)
        except DomainError as error:
            event(f"rejected {command.NAME}: {error.code}")
            return False
        event(f"accepted {command.NAME}")
        return True

    @rule(target=customers, name=names, email=emails, phone=phones)
    def register(self, name: str, email: str | None, phone: str | None) -> Any:
        customer_id = uuid4()
        if self.run(
            m.RegisterCustomer(customer_id=customer_id, name=name, email=email, phone=phone)
        ):
            self.known.add(customer_id)
            return customer_id
        return multiple()

    @rule(c=customers, name=names, email=emails, phone=phones)
    def update(self, c: UUID, name: str, email: str | None, phone: str | None) -> None:
        self.run(
            m.UpdateProfile(customer_id=c, changes={"name": name, "email": email, "phone": phone})
        )

    @rule(c=customers, tag=tags, add=st.booleans())
    def tag(self, c: UUID, tag: str, add: bool) -> None:
        self.run(
            m.TagCustomer(customer_id=c, tag=tag)
            if add
            else m.UntagCustomer(customer_id=c, tag=tag)
        )

    @rule(c=customers, channel=st.sampled_from(["email", "phone", "visit"]))
    def contact(self, c: UUID, channel: str) -> None:
        self.run(m.RecordContact(customer_id=c, channel=channel, direction="inbound"))

    @rule(
        c=customers,
        order=st.sampled_from(["o1", "o2", "o3"]),
        amount=st.sampled_from(["1", "2.50"]),
        currency=st.sampled_from(["EUR", "USD", "CHF"]),
        days_ago=st.sampled_from([None, 3, 400]),
    )
    def purchase(
        self, c: UUID, order: str, amount: str, currency: str, days_ago: int | None
    ) -> None:
        when = None if days_ago is None else datetime.now(UTC) - timedelta(days=days_ago)
        purchase = m.RecordPurchase(
            customer_id=c, order_id=order, amount=amount, currency=currency, occurred_at=when
        )
        self.run(purchase)

    @rule(c=customers, tag=tags, churn=st.booleans())
    def another_writer(self, c: UUID, tag: str, churn: bool) -> None:
        """Another process writes: kept customers must catch up before their next command."""
        command = m.ChurnCustomer(customer_id=c) if churn else m.TagCustomer(customer_id=c, tag=tag)
        self.run(command, self.elsewhere)

    @rule(c=customers, nps=st.integers(0, 10), csat=st.integers(1, 5))
    def feedback(self, c: UUID, nps: int, csat: int) -> None:
        self.run(m.RecordFeedback(customer_id=c, nps=nps, csat=csat))

    @rule(
        c=customers,
        purpose=st.sampled_from(["email_marketing", "profiling"]),
        granted=st.booleans(),
    )
    def consent(self, c: UUID, purpose: str, granted: bool) -> None:
        self.run(m.SetConsent(customer_id=c, purpose=purpose, granted=granted))

    @rule(c=customers, stage=st.sampled_from(["new", "active", "loyal", "at_risk"]))
    def lifecycle(self, c: UUID, stage: str) -> None:
        self.run(m.ChangeLifecycleStage(customer_id=c, stage=stage))

    @rule(c=customers, churn=st.booleans())
    def churn_or_reactivate(self, c: UUID, churn: bool) -> None:
        self.run(m.ChurnCustomer(customer_id=c) if churn else m.ReactivateCustomer(customer_id=c))

    @rule(survivor=customers, duplicate=customers)
    def merge(self, survivor: UUID, duplicate: UUID) -> None:
        self.run(m.MergeCustomers(customer_id=survivor, duplicate_id=duplicate))

    @rule(survivor=customers, duplicate=customers)
    def unmerge(self, survivor: UUID, duplicate: UUID) -> None:
        self.run(m.UnmergeCustomers(customer_id=survivor, duplicate_id=duplicate))

    @rule(c=customers)
    def erase(self, c: UUID) -> None:
        self.run(m.EraseCustomer(customer_id=c))

    @rule(c=customers, points=st.integers(1, 50), earn=st.booleans())
    def points(self, c: UUID, points: int, earn: bool) -> None:
        kind = m.EarnPoints if earn else m.RedeemPoints
        self.run(kind(customer_id=c, points=points))

    @invariant()
    def state_folds_back_and_invariants_hold(self) -> None:
        customers = []
        for customer_id in self.known:
            loaded = self.store.customer(customer_id)
            assert vars(loaded) == vars(fold(self.store, customer_id))
            customers.append(loaded)
        check_invariants(self.store, customers)
        kept = self.service.cache.take(self.known)
        for customer_id, customer in load_many(self.store, list(kept), kept).items():
            assert vars(customer) == vars(fold(self.store, customer_id))
        self.service.cache.keep((c for c, _ in kept.values()), self.store.footprints)

    def teardown(self) -> None:
        for customer_id in self.known:  # time travel to every version equals the prefix fold
            assert_profile_matches(self.store, self.store.customer(customer_id))
            assert_audit_diffs_match_full_views(self.store, customer_id)
            latest = self.store.customer(customer_id).version
            for version in range(1, latest + 1):
                travelled = self.store.customer(customer_id, version=version)
                assert vars(travelled) == vars(fold(self.store, customer_id, version))
        self.store.close()


CustomerLifeMachine.TestCase.settings = settings(
    max_examples=60,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
test_random_valid_sequences_fold_back_and_keep_invariants = CustomerLifeMachine.TestCase


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
