"""The machinery of the live-equals-rebuild property test: one generated history run against
an event store and two live feeds (embedded; Kafka-like for the read models fed from
``customer.events``), with faults (refusing projectors, dead letters) and re-drives, then
every read model compared with a rebuild (the faults and the Kafka-like feed:
``purity_feeds.py``). See ``test_live_equals_rebuild.py``."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

from hypothesis import event

from commands import messages as m
from commands.campaigns import TargetForCampaign
from commands.segments import SegmentService
from commands.service import CommandService, Context
from consumers.embedded import EmbeddedRunner
from consumers.rebuild import rebuild, rebuild_all
from consumers.redrive import redrive
from consumers.store_feed import StoreFeed
from infra.readstore import open_read_store
from infra.store import EventStore
from projections.framework import Binding, ensure_schema
from projections.registry import all_projectors
from tests.integration.purity_feeds import KafkaLike, Refusing

Step = tuple[Any, ...]
CTX = Context(actor="purity")
NAMES = ["Ada", "Bob", "Chloé", "Dan"]
EMAILS = ["ada@example.com", "bob@example.com", "chloe@example.com", None]
TAGS = ["vip", "gold", "newsletter"]
SHOP_IDS = ["s0", "s1", "s2", "s3", "s4"]  # external ids; registering a held one finds its holder
PURPOSES = [None, "email_marketing", "sms_marketing", "profiling"]
ITEMS: list[list[dict[str, Any]]] = [  # line items by order number: recommendations and value
    [{"sku": "tea", "unit_cost": "1.00"}],
    [{"sku": "tea"}, {"sku": "mug", "quantity": 2, "unit_cost": "0.50"}],
    [{"sku": "honey", "unit_cost": "2.00"}, {"sku": "mug", "unit_cost": "0.50"}],
    [],
]
RULES: list[dict[str, Any]] = [
    {"field": "tags", "op": "contains", "value": "vip"},
    {"field": "email", "op": "exists", "value": True},  # personal: gone after an erasure
    {"field": "attributes.city", "op": "eq", "value": "Oslo"},
    {"field": "purchases.count", "op": "gte", "value": 2, "within": "30d"},
    {"not": {"field": "contacts.last_at", "op": "after", "value": "-7d"}},
    {
        "all": [
            {"field": "purchases.total.EUR", "op": "gte", "value": "50"},
            {"not": {"field": "tags", "op": "contains", "value": "gold"}},
        ]
    },
    {"field": "rfm.group", "op": "in", "value": ["champions", "loyal", "potential_loyalist"]},
    {
        "any": [
            {"field": "rfm.f", "op": "gte", "value": 2},
            {"field": "status", "op": "eq", "value": "churned"},
        ]
    },
]
MERGE_PART_SIZE = 1  # a duplicate with purchases moves them in several parts


@dataclass
class Databases:
    """Where one example lives: the event store, and the read stores of the two live feeds."""

    store: str
    embedded: str
    full: str
    cleanup: Callable[[], None] = field(default=lambda: None)


class History:
    """Runs one generated history against a store and both live feeds."""

    def __init__(self, databases: Databases, batch_size: int, stack: ExitStack) -> None:
        self.store = EventStore(databases.store)
        stack.callback(self.store.close)
        self.service = CommandService(
            self.store, default_region="DE", index_key="k", merge_part_size=MERGE_PART_SIZE
        )
        self.segments = SegmentService(self.store)
        self.feed = StoreFeed(self.store)
        self.read_stores = [open_read_store(databases.embedded), open_read_store(databases.full)]
        for read_store in self.read_stores:
            stack.callback(read_store.close)
            ensure_schema(read_store, all_projectors())
        self.faults = Refusing()
        projectors = self.faults.projectors
        self.runner = EmbeddedRunner(
            self.feed, self.read_stores[0], projectors, batch_size=batch_size
        )
        self.kafka = KafkaLike(self.feed, self.read_stores[1], projectors, batch_size)
        self.ids: list[UUID] = []
        self.merges: list[tuple[UUID, UUID]] = []
        self.orders: list[tuple[UUID, str]] = []  # (who recorded it, order id)
        self.now = datetime.now(UTC)

    def who(self, index: int) -> UUID:
        return self.ids[index % len(self.ids)] if self.ids else uuid4()

    def command(self, step: Step, number: int) -> m.Command | None:
        kind, *args = step
        if kind == "register":
            name, email, oslo, _, shop, back = args
            attributes = {"city": "Oslo"} if oslo else {}
            return m.RegisterCustomer(
                name=NAMES[name],
                email=EMAILS[email],
                attributes=attributes,
                external_ids={"shop": f"s{shop}"} if shop < len(SHOP_IDS) else {},
                occurred_at=self.now - timedelta(days=back),  # purchases are back-dated
            )
        if kind == "ref-buy":  # by external id: a merged holder's survivor answers
            shop, ago = args
            return m.RecordPurchase(
                customer_ref=m.CustomerRef(system="SHOP", id=SHOP_IDS[shop]),
                order_id=f"r{number}",
                amount="7",
                currency="EUR",
                items=ITEMS[number % len(ITEMS)],
                occurred_at=self.now - timedelta(days=ago),
            )
        if kind == "refund":  # an order recorded earlier (its holder may have merged since)
            if not self.orders:
                return None
            holder, order_id = self.orders[args[0] % len(self.orders)]
            return m.RefundPurchase(customer_id=holder, order_id=order_id)
        customer = self.who(args[0])
        if kind == "external":  # take, move or drop an external id (a taken one is refused)
            held = {"shop": SHOP_IDS[args[1]] if args[1] < len(SHOP_IDS) else None}
            return m.UpdateProfile(customer_id=customer, changes={"external_ids": held})
        if kind == "update":
            updates: dict[str, dict[str, Any]] = {
                "name": {"name": f"{NAMES[number % 4]} {number}"},
                "email": {"email": f"u{number}@example.com"},
                "city": {"attributes": {"city": "Oslo"}},
                "no-city": {"attributes": {"city": None}},
            }
            return m.UpdateProfile(customer_id=customer, changes=updates[args[1]])
        if kind in ("tag", "untag"):
            tagging = m.TagCustomer if kind == "tag" else m.UntagCustomer
            return tagging(customer_id=customer, tag=args[1])
        if kind == "buy":
            ago, amount, euros = args[1:]
            return m.RecordPurchase(
                customer_id=customer,
                order_id=f"o{number}",
                amount=amount,
                currency="EUR" if euros else "USD",
                items=ITEMS[number % len(ITEMS)],
                occurred_at=self.now - timedelta(days=ago),
            )
        if kind == "contact":
            when = self.now - timedelta(days=args[1])
            return m.RecordContact(
                customer_id=customer, channel="email", direction="inbound", occurred_at=when
            )
        if kind == "consent":
            return m.SetConsent(customer_id=customer, purpose=args[1], granted=args[2])
        if kind == "target":  # a campaign launch's command (refused without consent, capped)
            return TargetForCampaign(
                customer_id=customer,
                campaign_id=f"c{args[1]}",
                group="treatment" if args[2] else "control",
                purpose="email_marketing",
                channel="email",
                max_touches=2,
                window_days=30,
            )
        if kind == "feedback":  # dated back, out of order
            when = self.now - timedelta(days=args[1] * 3)
            return m.RecordFeedback(customer_id=customer, nps=args[1], occurred_at=when)
        if kind in ("merge", "unmerge"):
            pairing = m.MergeCustomers if kind == "merge" else m.UnmergeCustomers
            return pairing(customer_id=customer, duplicate_id=self.who(args[1]))
        simple = {"churn": m.ChurnCustomer, "reactivate": m.ReactivateCustomer}
        return simple.get(kind, m.EraseCustomer)(customer_id=customer)

    def run(self, steps: list[Step]) -> None:
        for number, step in enumerate(steps):
            kind = step[0]
            if kind == "define":
                _, segment, rule, purpose = step
                self.segments.define(f"s{segment}", f"S{segment}", RULES[rule], purpose, CTX)
            elif kind == "refresh":
                self.segments.refresh(datetime.now(UTC) + timedelta(days=step[1]), CTX)
            elif kind == "feed":
                for _ in range(step[1]):
                    self.runner.run_once()
                    self.kafka.log.run_once()
            elif kind == "relay":
                self.kafka.relay()
            elif kind in ("deliver", "crash"):
                getattr(self.kafka, kind)(step[1], step[2])
            elif kind == "rebuild":
                projector = self.faults.projectors[step[1]]
                rebuild(self.feed, self.read_stores[0], projector, batch_size=3)
            elif kind == "refuse":
                self.faults.refuse(step[2], self.who(step[1]))
            elif kind == "lose":
                self.kafka.lose(step[1])
            elif kind == "redrive":
                if step[1]:
                    self.faults.fix()
                self.redrive()
            elif kind == "undo":
                self.undo(step[1], erase=step[2])
            else:
                self.execute(self.command(step, number))
                if kind == "register" and self.ids:  # with a few purchases: merged in parts
                    self.execute_all(self.purchases(self.ids[-1], step[4], number))

    def purchases(self, customer: UUID, count: int, number: int) -> list[m.Command]:
        return [
            m.RecordPurchase(
                customer_id=customer,
                order_id=f"o{number}-{n}",
                amount="20.50",
                currency="EUR",
                items=ITEMS[(number + n) % len(ITEMS)],
                occurred_at=self.now - timedelta(days=n),
            )
            for n in range(count)
        ]

    def undo(self, back: int, *, erase: bool) -> None:
        """Unmerge the ``back``-th latest merge; then perhaps erase the duplicate."""
        if not self.merges:
            return
        survivor, duplicate = self.merges[-1 - back % len(self.merges)]
        self.execute(m.UnmergeCustomers(customer_id=survivor, duplicate_id=duplicate))
        if erase:
            self.execute(m.EraseCustomer(customer_id=duplicate))

    def execute(self, command: m.Command | None) -> None:
        if command is not None:
            self.execute_all([command])

    def execute_all(self, commands: list[m.Command]) -> None:
        outcomes = self.service.execute_batch(commands, CTX)
        for command, outcome in zip(commands, outcomes, strict=True):
            if outcome.status != "accepted":
                continue
            if outcome.customer_id is None:
                continue
            if isinstance(command, m.RegisterCustomer):
                if outcome.existing:
                    event("a registration found the holder of its external id")
                    continue
                self.ids.append(outcome.customer_id)
            if command.customer_ref is not None:
                event("a command by external id reached its customer")
            if isinstance(command, m.MergeCustomers):
                self.merges.append((outcome.customer_id, command.duplicate_id))
            if isinstance(command, m.RecordPurchase):
                self.orders.append((outcome.customer_id, command.order_id))
            if isinstance(command, m.RefundPurchase):
                event("a refund took a recorded order out")

    def redrive(self) -> None:
        """What ``clientele projections redrive`` does, for both live feeds."""
        for read_store in self.read_stores:
            redrive(self.feed, read_store, self.faults.projectors, due_only=False)

    def parked(self) -> int:
        count = 0
        for read_store in self.read_stores:
            with read_store.transaction() as tx:
                for projector in self.faults.projectors:
                    scoped = tx.with_tables(Binding.live(projector).tables)
                    count += len(projector.parking.listing(scoped))
        return count

    def tally(self) -> None:
        """What the history exercised (``--hypothesis-show-statistics``)."""
        envelopes = self.feed.read(0, 1_000_000)
        last: dict[str, str] = {}  # each customer's latest event type
        for e in envelopes:
            if e.type == "customer.duplicate_absorbed" and e.data["parts"] > 1:
                event("a merge in parts")
            if e.type == "customer.consent_withdrawn" and str(e.data["source"]).startswith(
                "merge:"
            ):
                event("a merge carried a withdrawal over")
            if e.type == "customer.erased" and e.data["copies_at"]:
                event("an erasure reached copies on another customer")
            if e.type == "customer.erased" and last.get(e.customer_key) == "customer.merged_into":
                event("an erasure cascaded to a merged duplicate")
            last[e.customer_key] = e.type
        parked = self.parked()
        event(f"customers parked before the fix: {parked if parked < 3 else '3 or more'}")

    def verify(self) -> None:
        self.runner.catch_up()
        self.kafka.drain()
        self.tally()
        self.faults.fix()
        self.redrive()
        self.runner.catch_up()
        self.kafka.drain()
        for read_store, feed in zip(self.read_stores, ("embedded", "full"), strict=True):
            with read_store.transaction() as tx:
                for projector in self.faults.projectors:
                    scoped = tx.with_tables(Binding.live(projector).tables)
                    assert projector.parking.listing(scoped) == [], (feed, projector.name)
            results = rebuild_all(self.feed, read_store, all_projectors(), verify_only=True)
            assert {r.name: r.differences for r in results if r.differences} == {}, feed


def check(databases: Databases, history: tuple[int, list[Step]]) -> None:
    batch_size, steps = history
    with ExitStack() as stack:
        stack.callback(databases.cleanup)
        run = History(databases, batch_size, stack)
        run.run(steps)
        run.verify()
