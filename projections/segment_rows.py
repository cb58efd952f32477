"""The segments projector's per-customer rows (:mod:`projections.segments`): each customer's
profile fold, memberships and RFM scores, read by customer id in chunks (:mod:`infra.sql_chunks`)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import orjson

from infra.read_tx import Tx
from infra.sql_chunks import among

CHUNK = 500  # customers per page of :func:`all_states`
Member = tuple[str, str]  # (segment id, customer id)


def by_customer(tx: Tx, select: str, customer_ids: Sequence[str]) -> list[tuple[Any, ...]]:
    """Rows of ``select`` (a query without WHERE) for some customers, in chunks."""
    rows = []
    for condition, params in among(tx, "customer_id", customer_ids):
        rows += tx.fetchall(f"{select} WHERE {condition}", params)
    return rows


def load_states(tx: Tx, customer_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    select = "SELECT customer_id, state FROM {segment_state}"
    return {c: orjson.loads(state) for c, state in by_customer(tx, select, customer_ids)}


def all_states(tx: Tx) -> Iterator[list[tuple[str, dict[str, Any]]]]:
    """Every customer's profile fold, in chunks by customer id."""
    after = ""
    while rows := tx.fetchall(
        "SELECT customer_id, state FROM {segment_state} WHERE customer_id > ? "
        "ORDER BY customer_id LIMIT ?",
        (after, CHUNK),
    ):
        yield [(customer, orjson.loads(state)) for customer, state in rows]
        after = rows[-1][0]


def load_members(tx: Tx, customer_ids: Sequence[str]) -> dict[Member, tuple[str, int]]:
    select = "SELECT segment_id, customer_id, since, position FROM {segment_members}"
    return {(s, c): (since, p) for s, c, since, p in by_customer(tx, select, customer_ids)}


def load_scores(tx: Tx, customer_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    select = "SELECT customer_id, scores FROM {segment_rfm}"
    return {c: orjson.loads(scores) for c, scores in by_customer(tx, select, customer_ids)}
