"""What the registration check must report for "Bob Smith", the same person as the earlier
"Robert Smith" (nickname, provider alias of the same mailbox, the phone written another way,
the address abbreviated): shared by the HTTP and the command-topic tests."""

from __future__ import annotations

from typing import Any

BOB_AS_ROBERT = {
    "name": "nickname",
    "email": "alias",
    "phone": "exact",
    "address": "exact",
    "external_id": "missing",
}


def assert_reported_as_robert(result: dict[str, Any], robert_id: str) -> None:
    """``result`` (a registration's outcome) names ``robert_id`` as its one probable duplicate,
    with :data:`BOB_AS_ROBERT` as the evidence level per field."""
    (reported,) = result["possible_duplicates"]
    assert reported["customer_id"] == robert_id
    assert reported["probability"] >= 0.9
    assert {f: e["level"] for f, e in reported["evidence"].items()} == BOB_AS_ROBERT
