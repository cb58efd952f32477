"""Merges never widen what may be done with a person's data (issue 13, items 4, 5 and 11b).

* consent: per purpose, a withdrawal on either side wins; a grant of the duplicate alone never
  reaches the survivor; the carried-over withdrawal is an ordinary consent event with source
  ``merge:<duplicate id>``, recorded before anything moves; unmerge leaves consents alone;
* erasure reaches every copy: a merged duplicate is refused naming the final survivor, and
  erasing a survivor erases every duplicate merged into it, down merge chains;
* a merged customer's 410 names the final survivor of its merge chain.
"""

from __future__ import annotations

from datetime import datetime
from itertools import product
from typing import Any
from uuid import UUID

import pytest

from commands import messages as m
from commands.service import CommandService, Context
from consumers.store_feed import StoreFeed
from domain import errors
from domain.events import DuplicateAbsorbed, Erased
from domain.merging import MERGE_SOURCE_PREFIX
from domain.segment_evaluation import matches
from domain.segment_rules import parse
from domain.values import ConsentPurpose
from infra.envelope import Envelope
from infra.store import EventStore
from projections import profile_fold
from tests.unit.merge_support import folded
from tests.unit.test_properties import assert_profile_matches
from tests.unit.test_service import register

PURPOSES = list(ConsentPurpose)
DECISIONS = (None, True, False)  # never asked, granted, withdrawn
NEWSLETTER = parse({"field": "tags", "op": "contains", "value": "newsletter"})


def decide(
    service: CommandService, ctx: Context, customer: UUID, purpose: str, granted: bool | None
) -> None:
    if granted is None:
        return
    if granted is False:  # the repro's order: granted once, then taken back by the link
        service.execute(m.SetConsent(customer_id=customer, purpose=purpose, granted=True), ctx)
    service.execute(
        m.SetConsent(
            customer_id=customer,
            purpose=purpose,
            granted=granted,
            source="unsubscribe-link" if granted is False else "signup-form",
        ),
        ctx,
    )


def in_audience(state: dict[str, Any], purpose: str) -> bool:
    """What the segments projector decides for a purpose-gated segment on ``newsletter``."""
    return matches(NEWSLETTER, purpose, state, datetime.fromisoformat(state["updated_at"]), None)


# ------------------------------------------------------------------------------ consent


@pytest.mark.parametrize("purpose", PURPOSES)
def test_merge_of_the_repro_withdraws_the_survivors_consent_and_leaves_the_audience(
    service: CommandService, store: EventStore, ctx: Context, purpose: ConsentPurpose
) -> None:
    survivor = register(service, ctx, name="Sam")  # no email
    duplicate = register(service, ctx, name="Sam D", email="sam@example.com", phone="+4930901820")
    decide(service, ctx, survivor, purpose, True)
    decide(service, ctx, duplicate, purpose, False)
    service.execute(m.TagCustomer(customer_id=survivor, tag="newsletter"), ctx)
    assert in_audience(folded(store, survivor), purpose)

    merged = service.execute(m.MergeCustomers(customer_id=survivor, duplicate_id=duplicate), ctx)

    assert merged.events[0] == "customer.consent_withdrawn"  # before the address moves
    after = store.customer(survivor)
    assert (after.email, after.consents[purpose]) == ("sam@example.com", False)
    state = folded(store, survivor)
    assert state["email"] == "sam@example.com" and state["consents"][purpose] is False
    assert not in_audience(state, purpose)
    withdrawal = [e for _, e in store.history(survivor) if e.TYPE == "customer.consent_withdrawn"]
    assert [(e.purpose, e.source) for e in withdrawal] == [  # type: ignore[attr-defined]
        (purpose.value, f"{MERGE_SOURCE_PREFIX}{duplicate}")
    ]
    # the person may grant again after the merge: then the survivor is back in the audience
    service.execute(m.SetConsent(customer_id=survivor, purpose=purpose, granted=True), ctx)
    assert in_audience(folded(store, survivor), purpose)


@pytest.mark.parametrize(
    ("purpose", "mine", "theirs"), list(product(PURPOSES, DECISIONS, DECISIONS))
)
def test_every_consent_combination_for_every_purpose(
    service: CommandService,
    store: EventStore,
    ctx: Context,
    purpose: ConsentPurpose,
    mine: bool | None,
    theirs: bool | None,
) -> None:
    survivor = register(service, ctx, name="Sam")
    duplicate = register(service, ctx, name="Sam D", email="sam@example.com")
    decide(service, ctx, survivor, purpose, mine)
    decide(service, ctx, duplicate, purpose, theirs)
    before = dict(store.customer(duplicate).consents)

    outcome = service.execute(m.MergeCustomers(customer_id=survivor, duplicate_id=duplicate), ctx)

    expected = False if False in (mine, theirs) else mine  # withdrawal wins; their grant alone: no
    merged = store.customer(survivor)
    assert merged.consents.get(purpose) is expected
    assert ("customer.consent_withdrawn" in outcome.events) is (
        theirs is False and mine is not False
    )
    state = folded(store, survivor)
    assert state["consents"].get(purpose) is expected
    assert_profile_matches(store, merged)

    service.execute(m.UnmergeCustomers(customer_id=survivor, duplicate_id=duplicate), ctx)
    assert store.customer(survivor).consents.get(purpose) is expected  # a withdrawal stays
    assert store.customer(duplicate).consents == before  # the duplicate's own, unchanged
    assert folded(store, duplicate)["consents"] == before


def test_a_merge_chain_carries_withdrawals_along(
    service: CommandService, store: EventStore, ctx: Context
) -> None:
    a, b, c = (register(service, ctx, name=n) for n in ("A", "B", "C"))
    decide(service, ctx, a, "sms_marketing", False)
    decide(service, ctx, c, "sms_marketing", True)
    service.execute(m.MergeCustomers(customer_id=b, duplicate_id=a), ctx)
    service.execute(m.MergeCustomers(customer_id=c, duplicate_id=b), ctx)
    assert store.customer(c).consents["sms_marketing"] is False


# ------------------------------------------------------------------------------ erasure


def chain(service: CommandService, ctx: Context) -> tuple[UUID, UUID, UUID]:
    """A → B → C, each with its own email and phone moving along where the next has none."""
    a = register(service, ctx, name="Ann A", email="ann.a@example.com", phone="+4930901820")
    b = register(service, ctx, name="Ann B")
    c = register(service, ctx, name="Ann C", email="ann.c@example.com")
    service.execute(
        m.RecordPurchase(customer_id=a, order_id="A-1", amount="5", currency="EUR"), ctx
    )
    service.execute(m.MergeCustomers(customer_id=b, duplicate_id=a), ctx)
    service.execute(m.MergeCustomers(customer_id=c, duplicate_id=b), ctx)
    return a, b, c


def test_erasing_a_merged_duplicate_is_refused_naming_the_final_survivor(
    service: CommandService, store: EventStore, ctx: Context
) -> None:
    survivor = register(service, ctx, name="Sam")
    duplicate = register(service, ctx, name="Sam D", email="sam@example.com", phone="+4930901820")
    service.execute(m.MergeCustomers(customer_id=survivor, duplicate_id=duplicate), ctx)
    head = store.head()
    with pytest.raises(errors.CustomerMerged) as refused:
        service.execute(m.EraseCustomer(customer_id=duplicate), ctx)
    assert refused.value.survivor_id == survivor and refused.value.code == "gone-merged"
    assert store.head() == head  # nothing recorded, no key shredded
    assert store.customer(survivor).email == "sam@example.com"
    # the person is erased through the survivor, which reaches the duplicate
    service.execute(m.EraseCustomer(customer_id=survivor), ctx)
    for customer in (survivor, duplicate):
        assert store.customer(customer).status == "erased"
        assert store.data_keys.for_reading(customer.hex) is None


def test_erasing_the_end_of_a_chain_erases_every_copy(
    service: CommandService, store: EventStore, ctx: Context
) -> None:
    a, b, c = chain(service, ctx)
    assert store.customer(c).phone == "+4930901820"  # A's phone moved to B, then to C
    outcome = service.execute(m.EraseCustomer(customer_id=c, reason="request"), ctx)
    assert outcome.events == ("customer.erased",) * 3
    personal = ("Ann A", "Ann B", "Ann C", "ann.a@example.com", "ann.c@example.com", "+4930901820")
    for customer in (a, b, c):
        assert store.data_keys.for_reading(customer.hex) is None
        erased = store.customer(customer)
        assert (erased.status, erased.name, erased.email, erased.phone) == ("erased",) + (None,) * 3
        for version in range(1, erased.version + 1):  # time travel
            travelled = store.customer(customer, version=version)
            assert travelled.email is None and travelled.phone is None
            assert all(not r.get("email") for r in travelled.absorbed.values())
        history = [Envelope.from_event(e, p) for p, e in store.history(customer)]
        text = str([(e.data, e.sealed) for e in history])
        assert not any(value in text for value in personal)
        assert folded(store, customer)["status"] == "erased"
    envelopes = str([(e.data, e.sealed) for e in StoreFeed(store).read(0, 1000)])
    assert not any(value in envelopes for value in personal)
    assert store.customer(c).purchases  # facts without personal data stay
    for customer in (a, b):  # every copy answers as erased from now on
        with pytest.raises(errors.CustomerErased):
            service.execute(m.EraseCustomer(customer_id=customer), ctx)


def test_erasing_a_survivor_spares_duplicates_already_given_back(
    service: CommandService, store: EventStore, ctx: Context
) -> None:
    survivor = register(service, ctx, name="Sam")
    duplicate = register(service, ctx, name="Other", email="other@example.com")
    service.execute(m.MergeCustomers(customer_id=survivor, duplicate_id=duplicate), ctx)
    service.execute(m.UnmergeCustomers(customer_id=survivor, duplicate_id=duplicate), ctx)
    outcome = service.execute(m.EraseCustomer(customer_id=survivor), ctx)
    assert outcome.events == ("customer.erased",)
    kept = store.customer(duplicate)
    assert (kept.status, kept.email) == ("active", "other@example.com")


# ------------------------------------------------------------------------- final survivor


def test_every_write_to_a_chain_member_names_the_final_survivor(
    service: CommandService, ctx: Context
) -> None:
    a, b, c = chain(service, ctx)
    other = register(service, ctx, name="Other")
    commands: list[m.Command] = [
        m.TagCustomer(customer_id=a, tag="x"),
        m.SetConsent(customer_id=a, purpose="profiling", granted=False),
        m.EraseCustomer(customer_id=a),
        m.EraseCustomer(customer_id=b),
        m.MergeCustomers(customer_id=a, duplicate_id=other),
        m.MergeCustomers(customer_id=other, duplicate_id=a),
        m.UnmergeCustomers(customer_id=b, duplicate_id=a),
    ]
    outcomes = service.execute_batch(commands, ctx)
    for command, outcome in zip(commands, outcomes, strict=True):
        assert outcome.problem is not None, command
        assert outcome.to_dict()["problem"]["survivor_id"] == str(c), command
        assert isinstance(outcome.problem, errors.CustomerMerged)
        assert outcome.problem.survivor_id == c


def readable(store: EventStore, customer: UUID) -> str:
    """Everything a reader of the customer's stream can open: events (as the feed opens
    them for every consumer), history and time travel to every version."""
    latest = store.customer(customer).version
    opened = [(e.data, e.sealed) for e in StoreFeed(store).read(0, 100_000)]
    versions = [vars(store.customer(customer, version=v)) for v in range(1, latest + 1)]
    return repr([opened, store.history(customer), versions])


def test_erasing_a_duplicate_after_an_unmerge_reaches_the_copies_on_the_survivor(
    service: CommandService, store: EventStore, ctx: Context
) -> None:
    survivor = register(service, ctx, name="Sam")
    duplicate = register(service, ctx, name="Dee", email="dee@example.com", phone="+4930901820")
    service.execute(m.MergeCustomers(customer_id=survivor, duplicate_id=duplicate), ctx)
    for n in range(6):  # snapshots of the survivor while it holds the duplicate's data
        service.execute(m.TagCustomer(customer_id=survivor, tag=f"t{n}"), ctx)
    service.execute(m.UnmergeCustomers(customer_id=survivor, duplicate_id=duplicate), ctx)
    assert store.snapshots is not None and list(store.snapshots.get(survivor))
    assert "dee@example.com" in readable(store, survivor)  # the duplicate's own, under its key

    erased = service.execute(m.EraseCustomer(customer_id=duplicate), ctx)

    assert erased.events == ("customer.erased",)
    last = store.history(duplicate)[-1][1]
    assert isinstance(last, Erased) and last.copies_at == [str(survivor)]
    assert list(store.snapshots.get(survivor)) == []
    text = readable(store, survivor)
    assert "dee@example.com" not in text and "+4930901820" not in text
    kept = store.customer(survivor)
    assert (kept.status, kept.name, kept.tags[-1]) == ("active", "Sam", "t5")


def test_a_chain_seals_what_moves_with_the_key_of_whom_it_belongs_to(
    service: CommandService, store: EventStore, ctx: Context
) -> None:
    a = register(service, ctx, name="A", email="a@example.com")
    b = register(service, ctx, name="B", phone="+4930901820")
    c = register(service, ctx, name="C")
    service.execute(m.MergeCustomers(customer_id=b, duplicate_id=a), ctx)
    outcome = service.execute(m.MergeCustomers(customer_id=c, duplicate_id=b), ctx)
    assert outcome.events == ("customer.duplicate_absorbed",) * 2 + ("customer.merged_into",)
    parts = [e for _, e in store.history(c) if isinstance(e, DuplicateAbsorbed)]
    assert [(e.part, e.email, e.phone, e.data_owner) for e in parts] == [
        (1, "a@example.com", None, str(a)),
        (2, None, "+4930901820", str(b)),
    ]
    service.execute(m.UnmergeCustomers(customer_id=c, duplicate_id=b), ctx)
    service.execute(m.UnmergeCustomers(customer_id=b, duplicate_id=a), ctx)
    assert (store.customer(c).email, store.customer(b).email) == (None, None)

    service.execute(m.EraseCustomer(customer_id=a), ctx)

    for holder in (b, c):
        assert "a@example.com" not in readable(store, holder)
    assert "+4930901820" in readable(store, c)  # B's own phone: B is not erased


def test_a_live_fold_that_opens_the_unmerge_after_the_erasure_agrees_with_a_replay(
    service: CommandService, store: EventStore, ctx: Context
) -> None:
    """A consumer that folded the merge before the duplicate was erased, and opens the unmerge
    after (its copy of the phone reads null by then), still gives the phone back."""
    survivor = register(service, ctx, name="Sam", email="sam@example.com")
    duplicate = register(service, ctx, name="Dee", phone="+4930901820")
    merged = service.execute(m.MergeCustomers(customer_id=survivor, duplicate_id=duplicate), ctx)
    service.execute(m.UnmergeCustomers(customer_id=survivor, duplicate_id=duplicate), ctx)
    live = profile_fold.empty(survivor)
    for envelope in StoreFeed(store).read(0, 1000):
        if envelope.customer_id == survivor and envelope.version <= (merged.version or 0):
            profile_fold.apply(live, envelope)
    assert live["phone"] == "+4930901820"

    service.execute(m.EraseCustomer(customer_id=duplicate), ctx)
    for envelope in StoreFeed(store).read(0, 1000):
        if envelope.customer_id == survivor:
            profile_fold.apply(live, envelope)  # the unmerge, opened after the erasure

    assert live["phone"] is None and live == folded(store, survivor)
    assert store.customer(survivor).phone is None
