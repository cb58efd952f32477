"""Response helpers shared by the routers (routers never import each other)."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import orjson
from fastapi import Response

from domain.errors import CustomerErased, CustomerMerged, CustomerNotFound
from infra.read_tx import Tx
from projections.profiles import final_survivor, get_profile


def json_response(document: Any, etag: int | None = None) -> Response:
    """``document`` as JSON (orjson); ``etag`` (a version) as the ``ETag`` header."""
    response = Response(orjson.dumps(document), media_type="application/json")
    if etag is not None:
        response.headers["ETag"] = f'"{etag}"'
    return response


def live_profile(tx: Tx, customer_id: UUID) -> dict[str, Any]:
    """The customer's profile; :class:`CustomerNotFound` (404), :class:`CustomerErased` or
    :class:`CustomerMerged` naming the final survivor (410)."""
    live = get_profile(tx, customer_id)
    if live is None:
        raise CustomerNotFound(customer_id)
    if live["status"] == "merged":
        raise CustomerMerged(customer_id, final_survivor(tx, UUID(live["merged_into"])))
    if live["status"] == "erased":
        raise CustomerErased(customer_id)
    return live
