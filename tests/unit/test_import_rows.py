"""Import rows to commands: derived order ids, natural keys, strict JSON types."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from uuid import UUID, uuid5

import pytest

from api.cli.importing import rows
from api.cli.importing.fields import CUSTOMERS, PURCHASES, REF_ID, REF_SYSTEM, zone
from api.cli.importing.rows import IMPORT_NAMESPACE, Row, RowBuilder
from commands import messages as m

DIGEST = "ab" * 32


def purchases(where: str = "UTC", system: str | None = "shop") -> RowBuilder:
    return RowBuilder(PURCHASES, DIGEST, system=system, zone=zone(where))


def order_ids(builder: RowBuilder, rows: list[dict[str, Any]]) -> list[str | None]:
    return [builder.build(line, values).order_id for line, values in enumerate(rows, start=2)]


def purchase(external_id: str = "42", **values: Any) -> dict[str, Any]:
    return {REF_ID: external_id, "amount": "12.50", "currency": "EUR", **values}


def test_identical_rows_stay_distinct_purchases_and_a_reimport_derives_the_same_ids() -> None:
    rows = [purchase(occurred_at="1997-01-01"), purchase(occurred_at="1997-01-01"), purchase("43")]
    first = order_ids(purchases(), rows)
    assert len(set(first)) == 3 and all(i and i.startswith("auto-") for i in first)
    assert order_ids(purchases(), rows) == first
    # a longer export of the same rows in the same order keeps the ids of the rows it shares
    longer = order_ids(purchases(), [purchase("41"), *rows, purchase(occurred_at="1997-01-01")])
    assert longer[1:4] == first and longer[4] not in first


@pytest.mark.parametrize(
    "same",
    [
        purchase(occurred_at="1997-01-01T00:00:00Z"),  # the same instant written otherwise
        purchase(occurred_at="1997-01-01 00:00"),
        purchase(amount="12.5", currency="eur"),  # the same amount and currency
        purchase(" 42 "),
        {**purchase(), REF_SYSTEM: "Shop"},  # systems are case-insensitive
    ],
)
def test_the_derived_id_reads_canonical_values(same: dict[str, Any]) -> None:
    base = purchase(occurred_at="1997-01-01") if "occurred_at" in same else purchase()
    assert order_ids(purchases(), [base]) == order_ids(purchases(), [same])


def test_derived_ids_are_those_earlier_versions_derived() -> None:
    """A re-import after an upgrade must find the purchases a former version recorded."""
    builder = purchases("Europe/Berlin")
    given = [purchase(occurred_at="1997-01-31"), purchase(occurred_at="1997-01-31"), purchase()]
    assert order_ids(builder, given) == [  # as of the first release of derived ids
        "auto-3f2d0d694a3bcd5b136199acc9095da6",
        "auto-0ed2274b22e75ee2949753d85dc62a2e",
        "auto-51edc0940d9ae60a78811a6472b0dee7",
    ]


def test_each_distinct_date_and_currency_is_read_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Exports repeat them on every row: they are read (and checked) once each."""
    read: Counter[str] = Counter()

    def counted(name: str) -> Callable[..., Any]:
        real = getattr(rows, name)

        def call(*args: Any) -> Any:
            read[name] += 1
            return real(*args)

        return call

    for name in ("read_moment", "normalise_currency"):
        monkeypatch.setattr(rows, name, counted(name))
    builder = purchases()
    order_ids(builder, [purchase(str(n), occurred_at="1997-01-01") for n in range(5)])
    assert read == {"normalise_currency": 1, "read_moment": 1}
    bad = builder.build(9, purchase(currency="EURO", occurred_at="1997-01-01"))
    again = builder.build(10, purchase(currency="EURO", occurred_at="1997-01-01"))
    assert bad.problem is not None and again.problem is not None
    assert read["normalise_currency"] == 3  # a refusal is never kept: read again, refused again


def test_the_derived_id_changes_with_what_makes_another_purchase() -> None:
    base = order_ids(purchases(), [purchase(occurred_at="1997-01-01")])
    for other in (
        purchase(occurred_at="1997-01-02"),
        purchase(amount="12.51", occurred_at="1997-01-01"),
        purchase("43", occurred_at="1997-01-01"),
    ):
        assert order_ids(purchases(), [other]) != base
    assert order_ids(purchases("Europe/Berlin"), [purchase(occurred_at="1997-01-01")]) != base


def test_a_given_order_id_is_kept_and_a_purchase_names_its_customer_once() -> None:
    row = purchases().build(2, purchase(order_id="A-1", occurred_at="1997-01-01"))
    (command,) = row.commands
    assert isinstance(command, m.RecordPurchase)
    assert (command.order_id, command.customer_ref, command.customer_id) == (
        "A-1",
        m.CustomerRef(system="shop", id="42"),
        None,
    )
    assert command.occurred_at == datetime(1997, 1, 1, tzinfo=UTC)
    assert command.idempotency_key is None  # the order id is the natural key
    by_id = purchases().build(
        3, {"customer_id": str(UUID(int=7)), "amount": "1", "currency": "EUR"}
    )
    assert by_id.commands[0].customer_id == UUID(int=7) and by_id.order_id


@pytest.mark.parametrize(
    ("values", "field", "message"),
    [
        ({**purchase(), "customer_id": str(UUID(int=7))}, "customer_ref", "not both"),
        ({"amount": "1.00", "currency": "EUR"}, "customer_id", "is required"),
        ({"customer_id": "nope", "amount": "1.00", "currency": "EUR"}, "customer_id", "not a UUID"),
        (purchase(amount=12.5), "amount", "not a number"),
        (purchase(amount="-1"), "amount", "no sign"),
        (purchase(currency="EURO"), "currency", "ISO-4217"),
        ({**purchase(), REF_ID: 42}, "customer_ref.id", "must be a string"),
        ({**purchase(), REF_SYSTEM: "not a system!"}, "customer_ref.system", "system"),
        (purchase(occurred_at="01/02/1997"), "occurred_at", "must be a date"),
        (purchase(order_id=7), "order_id", "must be a string"),
        ({REF_ID: "42", "currency": "EUR"}, "amount", "is required"),
    ],
)
def test_a_bad_value_refuses_its_row_naming_the_field(
    values: dict[str, Any], field: str, message: str
) -> None:
    row = purchases().build(9, values)
    assert row.commands == () and row.problem is not None
    assert row.problem.details["field"] == field and message in row.problem.message


def test_without_a_system_an_external_id_is_refused_per_row() -> None:
    row = purchases(system=None).build(2, purchase())
    assert row.problem is not None and row.problem.details["field"] == REF_SYSTEM


def customers(system: str | None = "shop") -> RowBuilder:
    return RowBuilder(CUSTOMERS, DIGEST, system=system, zone=zone("Europe/Berlin"))


def test_a_customer_with_external_ids_registers_by_them_with_business_time_and_tags() -> None:
    row = customers().build(
        5,
        {
            "name": "Ada",
            REF_ID: "00042",
            "external_ids.crm": "C-17",
            "attributes.city": "Graz",
            "tags": "VIP; Gold Member;vip",
            "occurred_at": "1996-05-01",
        },
    )
    register, *rest = row.commands
    tags = [t for t in rest if isinstance(t, m.TagCustomer)]
    assert isinstance(register, m.RegisterCustomer) and len(tags) == len(rest)
    assert register.external_ids == {"shop": "00042", "crm": "C-17"}
    assert (register.customer_id, register.idempotency_key) == (None, None)
    assert register.attributes == {"city": "Graz"}
    assert register.occurred_at == datetime(1996, 4, 30, 22, tzinfo=UTC)
    assert [(t.tag, t.customer_ref, t.occurred_at, t.idempotency_key) for t in tags] == [
        (tag, m.CustomerRef(system="shop", id="00042"), register.occurred_at, None)
        for tag in ("vip", "gold-member")
    ]
    assert (row.ref, row.customer_id) == (("shop", "00042"), None)


def test_a_customer_without_a_natural_key_gets_the_ids_earlier_imports_derived() -> None:
    row: Row = customers(system=None).build(3, {"name": "Bo", "tags": ["a"]})
    register, tag = row.commands
    expected = uuid5(IMPORT_NAMESPACE, f"{DIGEST[:16]}:3")
    assert register.customer_id == tag.customer_id == expected
    assert [register.idempotency_key, tag.idempotency_key] == [
        f"import:{DIGEST[:16]}:3:0",
        f"import:{DIGEST[:16]}:3:1",
    ]


@pytest.mark.parametrize(
    ("values", "field"),
    [
        ({"email": "a@example.com"}, "name"),
        ({"name": "Ada", "tags": "ok;!!!"}, "tag"),
        ({"name": "Ada", "tags": [1]}, "tags"),
        ({"name": "Ada", "external_ids.shop": 42}, "external_ids.shop"),
        ({"name": ["Ada"]}, "name"),
    ],
)
def test_a_bad_customer_row_is_refused_before_anything_is_sent(
    values: dict[str, Any], field: str
) -> None:
    row = customers().build(4, values)
    assert row.commands == () and row.problem is not None
    assert row.problem.details["field"] == field
