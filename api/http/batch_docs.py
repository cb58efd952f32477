"""The batch route's command types documented for OpenAPI: per type a description, an example
(``POST /v1/commands:batch`` examples) and a JSON Schema, joined into a union discriminated
by ``type``."""

from __future__ import annotations

from typing import Any

from pydantic import TypeAdapter

from api.http.schemas import EXAMPLE_ID, UpdateProfileRequest
from commands.messages import COMMAND_TYPES, UpdateProfile

# Per batch command type: what it does, and an example (each parses, see
# tests/integration/test_first_hour.py).
BATCH_COMMANDS: dict[str, tuple[str, dict[str, Any]]] = {
    "register": (
        "Register a customer (the same idempotency_key twice: the same customer)",
        {
            "name": "Ada Lovelace",
            "email": "ada@example.com",
            "attributes": {"city": "London"},
            "idempotency_key": "crm-ada-17",
        },
    ),
    "update": (
        "Change profile fields, given at the top level like PATCH; attributes is a patch",
        {"customer_id": EXAMPLE_ID, "phone": "+44 20 7946 0959", "expected_version": 3},
    ),
    "contact": (
        "Record a contact (call, email, visit …)",
        {
            "customer_id": EXAMPLE_ID,
            "channel": "phone",
            "direction": "outbound",
            "kind": "care",
            "subject": "Follow-up",
            "occurred_at": "2026-05-01T12:00:00Z",
        },
    ),
    "tag": ("Add a tag", {"customer_id": EXAMPLE_ID, "tag": "vip"}),
    "untag": ("Remove a tag", {"customer_id": EXAMPLE_ID, "tag": "vip"}),
    "purchase": (
        "Record a purchase (the same order_id twice is a no-op)",
        {
            "customer_id": EXAMPLE_ID,
            "order_id": "A-1001",
            "amount": "12.50",
            "currency": "EUR",
            "occurred_at": "2026-05-01T12:00:00Z",
            "items": [{"sku": "tea", "quantity": 2}],
        },
    ),
    "feedback": (
        "Record an NPS and/or CSAT answer",
        {"customer_id": EXAMPLE_ID, "nps": 9, "csat": 5, "comment": "Quick and friendly"},
    ),
    "consent": (
        "Grant or withdraw consent for a purpose",
        {
            "customer_id": EXAMPLE_ID,
            "purpose": "email_marketing",
            "granted": True,
            "source": "newsletter-form",
        },
    ),
    "lifecycle": (
        "Move to a lifecycle stage",
        {"customer_id": EXAMPLE_ID, "stage": "loyal", "reason": "5th-order"},
    ),
    "churn": ("Mark as churned", {"customer_id": EXAMPLE_ID, "reason": "moved-abroad"}),
    "reactivate": ("Reactivate a churned customer", {"customer_id": EXAMPLE_ID}),
    "campaign_outcome": (
        "Report what became of a campaign message (unsubscribed withdraws the consent; a hard "
        "bounce makes the channel invalid)",
        {
            "customer_id": EXAMPLE_ID,
            "campaign_id": "5f8e2a1c-3b4d-4e6f-8a9b-0c1d2e3f4a5b",
            "outcome": "bounced",
            "hard": True,
        },
    ),
    "merge": (
        "Merge duplicate_id into customer_id (the survivor)",
        {"customer_id": EXAMPLE_ID, "duplicate_id": "9b1d7c4e-6f5a-4e3b-8c2d-1a0f9e8d7c6b"},
    ),
    "unmerge": (
        "Undo a merge: give back exactly what moved",
        {"customer_id": EXAMPLE_ID, "duplicate_id": "9b1d7c4e-6f5a-4e3b-8c2d-1a0f9e8d7c6b"},
    ),
    "erase": (
        "Erase the customer (crypto-shredding; duplicates merged into it too)",
        {"customer_id": EXAMPLE_ID, "reason": "gdpr-request"},
    ),
    "earn_points": (
        "Add loyalty points",
        {"customer_id": EXAMPLE_ID, "points": 120, "reason": "order-A-1001"},
    ),
    "redeem_points": (
        "Spend loyalty points",
        {"customer_id": EXAMPLE_ID, "points": 50, "reason": "voucher"},
    ),
    "expire_points": (
        "Expire loyalty points",
        {"customer_id": EXAMPLE_ID, "points": 20, "reason": "yearly-expiry"},
    ),
    "revoke_points": (
        "Take back the points a refunded order earned (at most the balance)",
        {"customer_id": EXAMPLE_ID, "points": 120, "order_id": "A-1001"},
    ),
    "refund": (
        "Refund (or cancel) a recorded order: it stops counting as a purchase",
        {"customer_id": EXAMPLE_ID, "order_id": "A-1001", "reason": "returned"},
    ),
    "tier": ("Set the loyalty tier", {"customer_id": EXAMPLE_ID, "tier": "gold"}),
}


def batch_example(name: str) -> dict[str, Any]:
    """The example command of type ``name`` (with its ``type``)."""
    return {"type": name, **BATCH_COMMANDS[name][1]}


def batch_examples() -> dict[str, dict[str, Any]]:
    """OpenAPI ``examples`` of ``POST /v1/commands:batch``: one batch per command type."""
    return {
        name: {"summary": f"{name}: {text}", "value": {"commands": [batch_example(name)]}}
        for name, (text, _) in BATCH_COMMANDS.items()
    }


COMPONENT_REF = "#/components/schemas/{model}"
"""Where pydantic's ``$ref`` point in the OpenAPI document."""


def _component(name: str) -> str:
    return "BatchCommand_" + name


def batch_command_schema(name: str) -> dict[str, Any]:
    """The JSON Schema of one batch command: ``type`` fixed to ``name`` plus the fields of
    its message (``update`` takes the profile fields at the top level, like ``PATCH``).
    Shared definitions are under ``$defs`` and referred to as OpenAPI components
    (``#/components/schemas/<name>``), where :func:`document_batch_commands` puts them."""
    cls = COMMAND_TYPES[name]
    schema = TypeAdapter(cls).json_schema(ref_template=COMPONENT_REF)
    if cls is UpdateProfile:
        profile = UpdateProfileRequest.model_json_schema()["properties"]
        schema["properties"].pop("changes")
        schema["properties"] |= profile
    schema["properties"] = {
        "type": {"type": "string", "const": name, "description": "The command type."},
        **schema["properties"],
    }
    schema["required"] = ["type", *schema.get("required", [])]
    schema["title"] = _component(name)
    schema["description"] = BATCH_COMMANDS[name][0]
    schema["examples"] = [batch_example(name)]
    return schema


def document_batch_commands(openapi: dict[str, Any]) -> dict[str, Any]:
    """Give ``openapi`` one schema per batch command type and make ``BatchRequest.commands``
    their union, discriminated by ``type``. Documentation only: the route still takes any
    objects and rejects bad ones one by one (``parse_command``)."""
    schemas = openapi.setdefault("components", {}).setdefault("schemas", {})
    refs = {name: f"#/components/schemas/{_component(name)}" for name in COMMAND_TYPES}
    for name in COMMAND_TYPES:
        schema = batch_command_schema(name)
        for shared, definition in schema.pop("$defs", {}).items():  # e.g. CustomerRef
            schemas.setdefault(shared, definition)
        schemas[_component(name)] = schema
    items = {
        "oneOf": [{"$ref": ref} for ref in refs.values()],
        "discriminator": {"propertyName": "type", "mapping": refs},
    }
    schemas["BatchRequest"]["properties"]["commands"]["items"] = items
    return openapi
