"""JSON documents inside commands: custom attributes and purchase line items.

Pure, like ``domain.values``, whose text policy and number rules they apply to every string and
number they hold, however deeply nested; bounds keep one command's payload small.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any

from domain.errors import InvalidInput
from domain.text_policy import Text, check_text, normalise_identifier, normalise_text
from domain.values import ATTRIBUTE_KEY, check_number, check_score

MAX_ATTRIBUTES = 100
MAX_ATTRIBUTE_TEXT = 1000
MAX_ITEMS = 500
MAX_ITEM_KEYS = 50
MAX_ITEM_DEPTH = 3
MAX_ITEM_TEXT = 1000
MAX_ITEMS_TEXT = 100_000
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
    at most 1,000 characters (100,000 in all), NFC; numbers as in attributes. ``sku`` is an
    identifier of at most 100 characters and ``quantity`` an integer from 0 to 1,000,000.
    Object keys are stored sorted (one canonical form whatever order they came in)."""
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
        if item.get("sku") is not None:
            normalise_identifier(f"{where}.sku", item["sku"], max_length=100)
        check_score(f"{where}.quantity", item.get("quantity"), 0, 1_000_000)
        items.append(_json_value(where, item, 1, budget))
    return items


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
