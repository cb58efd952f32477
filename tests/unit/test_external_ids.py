"""External ids on the command side: canonical forms, uniqueness among live customers,
``customer_ref`` resolution (merges resolve to the final survivor), idempotent registration,
release on erasure."""

from __future__ import annotations

import hashlib
from dataclasses import asdict
from typing import Any
from uuid import UUID, uuid4

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from commands import messages as m
from commands.service import CommandService, Context
from domain import errors
from domain.external_ids import MAX_EXTERNAL_IDS, normalise_external_ids
from infra.store import EventStore
from tests.unit.merge_support import folded

SHOP = m.CustomerRef(system="shop", id="00042")


def register(service: CommandService, ctx: Context, **fields: Any) -> UUID:
    fields.setdefault("name", "Ada Lovelace")
    outcome = service.execute(m.RegisterCustomer(**fields), ctx)
    assert outcome.customer_id is not None
    return outcome.customer_id


# ---------------------------------------------------------------------- canonical forms


@given(st.from_regex(r"[A-Za-z][A-Za-z0-9_.\-]{0,63}", fullmatch=True))
def test_systems_are_slugs_compared_in_lower_case(system: str) -> None:
    assert normalise_external_ids({system: " C-17 "}, patch=False) == {system.lower(): "C-17"}


@pytest.mark.parametrize(
    ("value", "field"),
    [
        ({"shop": 42}, "external_ids.shop"),  # a number may have lost its zeros
        ({"shop": ""}, "external_ids.shop"),
        ({"shop": "a\u200bb"}, "external_ids.shop"),  # invisible: not an identifier
        ({"shop": "x" * 201}, "external_ids.shop"),
        ({"shop": "a\nb"}, "external_ids.shop"),
        ({"1shop": "1"}, "external_ids"),
        ({"sh op": "1"}, "external_ids"),
        ({"Shop": "1", "shop": "2"}, "external_ids"),  # one system, twice
        ({f"s{n}": "1" for n in range(MAX_EXTERNAL_IDS + 1)}, "external_ids"),
        (["shop", "1"], "external_ids"),
    ],
)
def test_bad_external_ids_are_refused_naming_the_field(value: object, field: str) -> None:
    with pytest.raises(errors.InvalidInput) as caught:
        normalise_external_ids(value, patch=False)
    assert caught.value.field == field


def test_ids_keep_case_and_zeros_and_null_means_none_or_removal() -> None:
    given_ids = {"Legacy_CRM": "c-17", "shop": "00042", "pos": None}
    assert normalise_external_ids(given_ids, patch=False) == {
        "legacy_crm": "c-17",
        "shop": "00042",
    }
    assert normalise_external_ids(given_ids, patch=True)["pos"] is None


# ------------------------------------------------------------- registering, addressing


def test_registration_stores_canonical_ids_and_refs_address_the_customer(
    service: CommandService, store: EventStore, ctx: Context
) -> None:
    ada = register(service, ctx, external_ids={"Shop": " 00042 ", "legacy_crm": "C-17"})
    assert store.customer(ada).external_ids == {"legacy_crm": "C-17", "shop": "00042"}
    tagged = service.execute(m.TagCustomer(customer_ref=SHOP, tag="vip"), ctx)
    assert (tagged.customer_id, store.customer(ada).tags) == (ada, ["vip"])
    by_crm = m.parse_command(
        {"type": "purchase", "customer_ref": {"system": "LEGACY_CRM", "id": "C-17"}}
        | {"order_id": "o1", "amount": "5", "currency": "EUR"}
    )
    assert service.execute(by_crm, ctx).customer_id == ada
    assert folded(store, ada)["external_ids"] == {"legacy_crm": "C-17", "shop": "00042"}


def test_a_ref_nobody_holds_is_not_found_naming_the_ref(
    service: CommandService, ctx: Context
) -> None:
    register(service, ctx, external_ids={"shop": "00042"})
    with pytest.raises(errors.CustomerRefNotFound) as caught:
        service.execute(
            m.TagCustomer(customer_ref=m.CustomerRef(system="shop", id="42"), tag="x"), ctx
        )
    assert caught.value.code == "not-found"
    assert caught.value.details["customer_ref"] == {"system": "shop", "id": "42"}
    with pytest.raises(errors.InvalidInput, match=r"customer_ref\.system"):
        service.execute(m.TagCustomer(customer_ref=m.CustomerRef(system="1", id="1"), tag="x"), ctx)
    with pytest.raises(errors.InvalidInput, match="not both"):
        service.execute(m.TagCustomer(customer_id=uuid4(), customer_ref=SHOP, tag="x"), ctx)
    with pytest.raises(errors.InvalidInput, match=r"customer_ref\.id"):
        m.parse_command({"type": "tag", "tag": "x", "customer_ref": {"system": "s", "id": 1}})


def test_registering_a_held_id_again_is_the_same_customer(
    service: CommandService, store: EventStore, ctx: Context
) -> None:
    """Idempotent on the external id: nothing is recorded, the other fields are not applied
    (the caller updates explicitly), and ``existing`` says so — also in one batch, and when
    the id comes as ``customer_ref``."""
    ada = register(service, ctx, external_ids={"shop": "00042"}, email="ada@example.com")
    head = store.head()
    again = service.execute(
        m.RegisterCustomer(name="Someone Else", email="else@example.com", customer_ref=SHOP), ctx
    )
    assert (again.customer_id, again.version, again.existing, again.events) == (ada, 1, True, ())
    assert again.to_dict()["existing"] is True
    assert store.head() == head and store.customer(ada).name == "Ada Lovelace"
    twice = [m.RegisterCustomer(name="Bo", external_ids={"pos": "7"}) for _ in range(2)]
    first, second = service.execute_batch(twice, ctx)
    assert first.customer_id == second.customer_id and (first.existing, second.existing) == (
        False,
        True,
    )
    # a retried registration with its idempotency key still reports it found the customer
    keyed = m.RegisterCustomer(name="X", customer_ref=SHOP, idempotency_key="k1")
    assert service.execute(keyed, ctx).existing
    assert service.execute(keyed, ctx).existing
    # an id held by another customer than the customer_id asked for is taken
    with pytest.raises(errors.ExternalIdTaken) as taken:
        register(service, ctx, customer_id=uuid4(), customer_ref=SHOP)
    assert taken.value.existing_customer_id == ada
    assert register(service, ctx, customer_id=ada, customer_ref=SHOP) == ada


def test_ids_of_different_customers_in_one_registration_conflict(
    service: CommandService, store: EventStore, ctx: Context
) -> None:
    ada = register(service, ctx, external_ids={"shop": "1"})
    bob = register(service, ctx, name="Bob", external_ids={"crm": "B"})
    with pytest.raises(errors.ExternalIdsDisagree) as caught:
        register(service, ctx, name="Both", external_ids={"shop": "1", "crm": "B"})
    assert caught.value.details["customers"] == {"crm:B": str(bob), "shop:1": str(ada)}
    # one held, one new: the holder, unchanged (the new id is not attached)
    assert register(service, ctx, external_ids={"shop": "1", "pos": "9"}) == ada
    assert store.customer(ada).external_ids == {"shop": "1"}
    with pytest.raises(errors.InvalidInput, match="customer_ref"):
        register(
            service,
            ctx,
            external_ids={"shop": "2"},
            customer_ref=m.CustomerRef(system="shop", id="3"),
        )


def test_ids_are_unique_among_live_customers_and_updates_patch_them(
    service: CommandService, store: EventStore, ctx: Context
) -> None:
    ada = register(service, ctx, external_ids={"shop": "1"})
    bob = register(service, ctx, name="Bob")
    take = m.UpdateProfile(customer_id=bob, changes={"external_ids": {"shop": "1"}})
    with pytest.raises(errors.ExternalIdTaken) as caught:
        service.execute(take, ctx)
    assert caught.value.existing_customer_id == ada
    assert store.customer(bob).external_ids == {}  # nothing half-applied
    drop = m.parse_command(
        {"type": "update", "customer_id": str(ada), "external_ids": {"shop": None, "crm": "A"}}
    )
    service.execute(drop, ctx)
    assert store.customer(ada).external_ids == {"crm": "A"}
    service.execute(take, ctx)  # released: Bob may have it now
    assert (
        service.execute(
            m.TagCustomer(customer_ref=m.CustomerRef(system="shop", id="1"), tag="t"), ctx
        ).customer_id
        == bob
    )
    with pytest.raises(errors.InvalidInput, match="external_ids"):
        service.execute(m.UpdateProfile(customer_id=ada, changes={"external_ids": None}), ctx)
    unchanged = service.execute(
        m.UpdateProfile(customer_id=ada, changes={"external_ids": {"crm": "A"}}), ctx
    )
    assert unchanged.events == ()


# ----------------------------------------------------------------- merges and erasure


def test_merged_ids_answer_for_the_final_survivor_and_come_back_with_an_unmerge(
    service: CommandService, store: EventStore, ctx: Context
) -> None:
    a = register(service, ctx, name="A", external_ids={"shop": "A"})
    b = register(service, ctx, name="B", external_ids={"shop": "B"})
    c = register(service, ctx, name="C", external_ids={"shop": "C"})
    service.execute(m.MergeCustomers(customer_id=b, duplicate_id=a), ctx)
    service.execute(m.MergeCustomers(customer_id=c, duplicate_id=b), ctx)
    ref_a = m.CustomerRef(system="shop", id="A")
    assert service.execute(m.TagCustomer(customer_ref=ref_a, tag="t"), ctx).customer_id == c
    assert service.execute(m.RegisterCustomer(name="A again", customer_ref=ref_a), ctx).existing
    with pytest.raises(errors.ExternalIdTaken) as taken:  # the survivor cannot take it over
        service.execute(
            m.UpdateProfile(customer_id=c, changes={"external_ids": {"shop": "A"}}), ctx
        )
    assert taken.value.existing_customer_id == c
    service.execute(m.UnmergeCustomers(customer_id=c, duplicate_id=b), ctx)
    assert service.execute(m.TagCustomer(customer_ref=ref_a, tag="u"), ctx).customer_id == b


def test_erasure_releases_every_id_of_the_person_and_seals_them(
    service: CommandService, store: EventStore, ctx: Context
) -> None:
    survivor = register(service, ctx, external_ids={"shop": "S"})
    duplicate = register(service, ctx, name="Dup", external_ids={"shop": "D", "crm": "x"})
    service.execute(
        m.UpdateProfile(customer_id=survivor, changes={"external_ids": {"crm": "s"}}), ctx
    )
    service.execute(m.MergeCustomers(customer_id=survivor, duplicate_id=duplicate), ctx)
    service.execute(m.EraseCustomer(customer_id=survivor), ctx)
    for system, external_id in (("shop", "S"), ("shop", "D"), ("crm", "x"), ("crm", "s")):
        ref = m.CustomerRef(system=system, id=external_id)
        with pytest.raises(errors.CustomerRefNotFound):
            service.execute(m.TagCustomer(customer_ref=ref, tag="t"), ctx)
        fresh = service.execute(m.RegisterCustomer(name="New", customer_ref=ref), ctx)
        assert not fresh.existing and fresh.customer_id not in (survivor, duplicate)
    for customer in (survivor, duplicate):
        assert store.customer(customer).external_ids == {}
        for event in store.customer_events(customer):
            assert not getattr(event, "external_ids", {})  # shredded: unreadable
        stored = b"".join(e.state for e in store.recorder.select_events(customer))
        assert b'"S"' not in stored and b'"D"' not in stored


def test_the_fingerprint_of_a_request_without_the_new_fields_is_unchanged() -> None:
    """A retry across the upgrade must still match its idempotency record: fields added to a
    command type later are left out of its fingerprint while unset."""

    def before(command: m.Command, added: set[str]) -> str:
        body = {k: v for k, v in asdict(command).items() if k not in added}
        body.pop("idempotency_key")
        body["command"] = command.NAME
        raw = orjson.dumps(body, option=orjson.OPT_SORT_KEYS, default=str)
        return hashlib.sha256(raw).hexdigest()

    tag = m.TagCustomer(customer_id=uuid4(), tag="vip")
    assert tag.digest() == before(tag, {"customer_ref", "occurred_at"})
    buy = m.RecordPurchase(customer_id=uuid4(), order_id="o", amount="1", currency="EUR")
    assert buy.digest() == before(buy, {"customer_ref"})
    new = m.RegisterCustomer(name="Ada")
    assert new.digest() == before(new, {"customer_ref", "occurred_at", "external_ids"})
    assert m.RegisterCustomer(name="Ada", customer_ref=SHOP).digest() != new.digest()


def test_a_reused_key_with_a_body_orjson_cannot_encode_is_refused_not_a_crash(
    service: CommandService, ctx: Context
) -> None:
    """Found by schemathesis: the fingerprint of an unvalidated request (integers beyond 64
    bits, unpaired surrogates) raised, a 500, when its idempotency key was already recorded."""
    register(service, ctx, idempotency_key="k")
    odd_maps: list[dict[str, Any]] = [{"shop": 2**70}, {"\ud800": "1"}, {"shop": "\udfff"}]
    for odd in odd_maps:
        for field in ("external_ids", "attributes"):
            fields: dict[str, Any] = {field: odd}
            again = m.RegisterCustomer(name="Ada Lovelace", idempotency_key="k", **fields)
            assert again.digest() != m.RegisterCustomer(name="Ada Lovelace").digest()
            with pytest.raises(errors.IdempotencyKeyReused):
                service.execute(again, ctx)
