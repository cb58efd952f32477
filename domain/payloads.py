"""JSON documents inside commands: custom attributes and purchase line items.

Pure, like ``domain.values``, whose text policy and number rules they apply to every string and
number they hold, however deeply nested; bounds keep one command's payload small.
"""

from __future__ import annotations

import math
import re
import unicodedata
from decimal import Decimal
from typing import Any

from domain.errors import InvalidInput
from domain.text_policy import Text, check_text, normalise_identifier, normalise_text
from domain.values import ATTRIBUTE_KEY, check_number, parse_amount

MAX_ATTRIBUTES = 100
MAX_ATTRIBUTE_TEXT = 1000
MAX_ITEMS = 500
MAX_ITEM_KEYS = 50
MAX_ITEM_DEPTH = 3
MAX_ITEM_TEXT = 1000
MAX_ITEMS_TEXT = 100_000
MAX_ITEM_LABEL = 100
MAX_QUANTITY = 1_000_000
ITEM_KEY = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,63}$")


def normalise_attributes(value: object) -> dict[str, Any]:
    """Flat custom attributes: snake_case keys (in sorted order: one canonical form whatever
    order they came in), JSON scalar values (``None`` removes a key).

    Strings are free text (at most 1,000 characters, empty means ``None``); integers stay
    within ±(2^53 - 1) so every JSON reader gets them back exactly; floats must be finite."""
    if not isinstance(value, dict):
        raise InvalidInput("attributes", "must be an object")
    if len(value) > MAX_ATTRIBUTES:
        raise InvalidInput("attributes", f"at most {MAX_ATTRIBUTES} keys")
    cleaned: dict[str, Any] = {}
    for key, item in value.items():
        if not isinstance(key, str) or not ATTRIBUTE_KEY.match(key):
            raise InvalidInput("attributes", f"key {key!r} must match {ATTRIBUTE_KEY.pattern}")
        where = f"attributes.{key}"
        if isinstance(item, str):
            cleaned[key] = normalise_text(
                where, item, kind=Text.MULTILINE, max_length=MAX_ATTRIBUTE_TEXT
            )
        elif item is None or isinstance(item, int | float):
            cleaned[key] = item if item is None else check_number(where, item)
        else:
            raise InvalidInput(where, "must be a string, number, boolean or null")
    return dict(sorted(cleaned.items()))


def normalise_items(value: object) -> list[dict[str, Any]]:
    """Purchase line items: up to 500 objects of JSON values, nested at most 3 levels deep.

    Keys are ``[A-Za-z][A-Za-z0-9_]{0,63}`` (at most 50 per object); strings are free text of
    at most 1,000 characters (100,000 in all), NFC; numbers as in attributes. Object keys are
    stored sorted (one canonical form whatever order they came in). Recognised keys, each
    optional (``null`` is as absent) and checked where present, :class:`InvalidInput` naming
    ``items[i].<key>`` otherwise (:func:`recognised`)."""
    if not isinstance(value, list):
        raise InvalidInput("items", "must be a list of objects")
    if len(value) > MAX_ITEMS:
        raise InvalidInput("items", f"at most {MAX_ITEMS} items")
    budget = [MAX_ITEMS_TEXT]
    items = []
    for index, item in enumerate(value):
        where = f"items[{index}]"
        if not isinstance(item, dict):
            raise InvalidInput(where, "must be an object")
        cleaned = _json_value(where, item, 1, budget)
        items.append(dict(sorted({**cleaned, **recognised(where, item)}.items())))
    return items


def recognised(where: str, item: dict[str, Any]) -> dict[str, Any]:
    """The recognised keys of one line item in their canonical form (absent ones left out):

    * ``sku``, ``category``: identifiers (no control characters), trimmed, NFC, 1 to 100
      characters;
    * ``quantity``: a JSON number > 0 and at most 1,000,000 (``1.5`` kg is a quantity);
    * ``unit_price``, ``unit_cost``: money per unit, as ``amount`` of a purchase (digits with
      at most 4 decimal places, below 10^12), sent as a decimal string or a JSON number and
      stored as the decimal string (``"7.50"``; the number ``7.5`` becomes ``"7.5"``)."""
    found: dict[str, Any] = {}
    for key in ("sku", "category"):
        if item.get(key) is not None:
            found[key] = normalise_identifier(
                f"{where}.{key}", item[key], max_length=MAX_ITEM_LABEL
            )
    quantity = item.get("quantity")
    if quantity is not None:
        if isinstance(quantity, bool) or not isinstance(quantity, int | float):
            raise InvalidInput(f"{where}.quantity", "must be a number")
        check_number(f"{where}.quantity", quantity)
        if not 0 < quantity <= MAX_QUANTITY:
            raise InvalidInput(f"{where}.quantity", f"must be > 0 and at most {MAX_QUANTITY}")
        found["quantity"] = quantity
    for key in ("unit_price", "unit_cost"):
        if item.get(key) is not None:
            found[key] = _money(f"{where}.{key}", item[key])
    return found


def _money(field: str, value: object) -> str:
    if isinstance(value, bool):
        raise InvalidInput(field, "must be a decimal string such as '12.50' or a number")
    if isinstance(value, int | float):
        if isinstance(value, float) and not math.isfinite(value):
            raise InvalidInput(field, "must be finite")
        value = Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
    try:
        return str(parse_amount(value))
    except InvalidInput as error:
        raise InvalidInput(field, error.reason) from None


def _json_value(where: str, value: object, depth: int, budget: list[int]) -> Any:
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return check_number(where, value)
    if isinstance(value, str):
        check_text(where, value, Text.MULTILINE)
        if len(value) > MAX_ITEM_TEXT:
            raise InvalidInput(where, f"must be at most {MAX_ITEM_TEXT} characters")
        budget[0] -= len(value)
        if budget[0] < 0:
            raise InvalidInput("items", f"hold at most {MAX_ITEMS_TEXT} characters of text")
        return unicodedata.normalize("NFC", value)
    if not isinstance(value, list | dict):
        raise InvalidInput(where, "must be a JSON value")
    if depth > MAX_ITEM_DEPTH:
        raise InvalidInput(where, f"items nest at most {MAX_ITEM_DEPTH} levels deep")
    if isinstance(value, list):
        return [_json_value(f"{where}[{i}]", v, depth + 1, budget) for i, v in enumerate(value)]
    if len(value) > MAX_ITEM_KEYS:
        raise InvalidInput(where, f"at most {MAX_ITEM_KEYS} keys")
    cleaned = {}
    for key, item in value.items():
        if not isinstance(key, str) or not ITEM_KEY.match(key):
            raise InvalidInput(where, f"key {key!r} must match {ITEM_KEY.pattern}")
        cleaned[key] = _json_value(f"{where}.{key}", item, depth + 1, budget)
    return dict(sorted(cleaned.items()))
