"""The recognised keys of purchase line items (``sku``, ``category``, ``quantity``,
``unit_price``, ``unit_cost``): checked where present, stored in one canonical form, every other
key left free."""

from __future__ import annotations

from typing import Any

import pytest

from domain.errors import InvalidInput
from domain.payloads import normalise_items


def test_recognised_keys_are_stored_canonical_beside_free_keys() -> None:
    raw = {
        "sku": " tea-1 ",
        "category": "Drinks",
        "quantity": 1.5,
        "unit_price": 7.5,
        "unit_cost": "003.10",
        "note": {"gift": True},
    }
    (item,) = normalise_items([raw])
    assert item == {
        "category": "Drinks",
        "note": {"gift": True},
        "quantity": 1.5,
        "sku": "tea-1",
        "unit_cost": "3.10",
        "unit_price": "7.5",
    }
    assert list(item) == sorted(item) and normalise_items([item]) == [item]
    assert normalise_items([{"sku": None, "quantity": None, "free": 1}]) == [
        {"free": 1, "quantity": None, "sku": None}
    ]


@pytest.mark.parametrize(
    ("item", "field"),
    [
        ({"sku": ""}, "items[1].sku"),
        ({"sku": 5}, "items[1].sku"),
        ({"sku": "x" * 101}, "items[1].sku"),
        ({"sku": "a\tb"}, "items[1].sku"),
        ({"category": "  "}, "items[1].category"),
        ({"category": ["a"]}, "items[1].category"),
        ({"quantity": 0}, "items[1].quantity"),
        ({"quantity": -1}, "items[1].quantity"),
        ({"quantity": 1_000_001}, "items[1].quantity"),
        ({"quantity": "2"}, "items[1].quantity"),
        ({"quantity": True}, "items[1].quantity"),
        ({"unit_price": "-1"}, "items[1].unit_price"),
        ({"unit_price": "1e3"}, "items[1].unit_price"),
        ({"unit_price": "1.23456"}, "items[1].unit_price"),
        ({"unit_price": 1e30}, "items[1].unit_price"),
        ({"unit_price": False}, "items[1].unit_price"),
        ({"unit_price": {"v": 1}}, "items[1].unit_price"),
        ({"unit_cost": "12,50"}, "items[1].unit_cost"),
        ({"unit_cost": -0.5}, "items[1].unit_cost"),
    ],
)
def test_a_bad_recognised_key_is_refused_naming_it(item: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        normalise_items([{"sku": "fine"}, item])
    assert caught.value.field == field
