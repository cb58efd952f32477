"""Churn risk on the read side: the purchases it is computed from, and the segment fields.

A customer's churn risk (:func:`domain.churn_model.risk`) is a pure function of the churn
model's fitted version (a ``model.fitted`` event) and the customer's purchase instants, so it
is computed when read, never stored: the profile computes it from the analytics read model's
purchases (the same rows the fit summarises), the segments read model from its profile fold.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

import orjson

from domain.churn_model import ChurnModel, FittedVersion, risk
from domain.customer_value import decile_cuts, predicted_by_currency
from domain.segment_rules import MEMBER_STATUSES
from domain.values import utc_text
from infra.envelope import Envelope
from infra.read_tx import Tx

FITS_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS {segment_churn_model} (scope TEXT PRIMARY KEY, fit TEXT NOT NULL)"
)
LIVE = tuple(sorted(MEMBER_STATUSES))


def base_purchases(tx: Tx) -> Iterator[tuple[str, list[datetime]]]:
    """``(customer id, purchase instants)`` of every live (active or churned) customer with a
    purchase, by customer id, from the analytics read model."""
    marks = ",".join("?" * len(LIVE))
    current: str | None = None
    instants: list[datetime] = []
    for customer, occurred_at in tx.fetchall(
        "SELECT p.customer_id, p.occurred_at FROM {analytics_purchases} p "
        "JOIN {analytics_customers} c ON c.customer_id = p.customer_id "
        f"WHERE c.status IN ({marks}) ORDER BY p.customer_id",
        LIVE,
    ):
        if customer != current:
            if current is not None:
                yield current, instants
            current, instants = customer, []
        instants.append(datetime.fromisoformat(occurred_at))
    if current is not None:
        yield current, instants


def customer_purchases(tx: Tx, customer_id: UUID) -> list[datetime]:
    """One customer's purchase instants, from the analytics read model."""
    rows = tx.fetchall(
        "SELECT occurred_at FROM {analytics_purchases} WHERE customer_id = ?",
        (str(customer_id),),
    )
    return [datetime.fromisoformat(at) for (at,) in rows]


def churn_risk(model: FittedVersion | None, purchases: list[datetime]) -> dict[str, Any] | None:
    """The profile's ``churn_risk`` block under the fitted version ``model`` (the newest;
    :func:`domain.churn_model.risk`), or None before the first fit or the first purchase."""
    return None if model is None else risk(model, purchases)


def risk_in_view(
    model: ChurnModel | None,
    state: Mapping[str, Any],
    at: datetime,
    known_at: datetime | None = None,
) -> dict[str, Any] | None:
    """The ``churn_risk`` block of a time-travel view (a profile fold ``state`` of the events
    that had happened by business time ``at``; :func:`projections.profile_fold.travel`): the
    customer's purchases in the view under the model version in force at ``at`` (the newest
    fitted as of then, among those recorded by ``known_at``), evaluated at ``at``; None before
    that version or without a purchase. A pure function of the log and ``at``."""
    fitted = None if model is None else model.in_force(at, known_at)
    if fitted is None or not state.get("orders"):
        return None
    return risk(fitted, [datetime.fromisoformat(o) for _, _, o in state["orders"].values()], at)


def with_risk(
    state: Mapping[str, Any], model: FittedVersion | None, cuts: Mapping[str, int] | None = None
) -> Mapping[str, Any]:
    """A segments profile fold with ``churn_risk`` added (for rules on ``churn_risk.*``):
    ``{p_alive, expected_purchases, model_version}`` under ``model``, and ``value:
    {high_value}`` (for ``value.high_value``: the predicted value in some currency is above
    that currency's top-decile cut at the fit, ``cuts`` in cents; absent without cuts); absent
    without a model or a purchase (such a condition then matches nothing)."""
    if model is None or not state.get("orders"):
        return state
    instants = [datetime.fromisoformat(at) for _, _, at in state["orders"].values()]
    found = risk(model, instants)
    if found is None:
        return state
    if not cuts:
        return {**state, "churn_risk": found}
    predicted = predicted_by_currency(_orders(state), model)
    high = any(int(v.scaleb(2)) > cuts[c] for c, v in predicted.items() if c in cuts)
    return {**state, "churn_risk": found, "value": {"high_value": high}}


def _orders(state: Mapping[str, Any]) -> list[tuple[str, Decimal, datetime]]:
    return [(c, Decimal(a), datetime.fromisoformat(at)) for c, a, at in state["orders"].values()]


def value_cuts(model: FittedVersion, states: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    """Per currency, the top-decile cut (cents) of the live customers' predicted values under
    ``model`` (:func:`domain.customer_value.decile_cuts`): what ``value.high_value`` compares
    with until the next fit."""
    values: dict[str, list[int]] = {}
    for state in states:
        if state.get("status") in MEMBER_STATUSES and state.get("orders"):
            for currency, v in predicted_by_currency(_orders(state), model).items():
                values.setdefault(currency, []).append(int(v.scaleb(2)))
    return {c: decile_cuts(v)[-1] for c, v in sorted(values.items())}


def keep_value_cuts(tx: Tx, cuts: Mapping[str, int]) -> None:
    """Keep ``cuts`` beside the newest fit (:func:`keep_fit` first)."""
    tx.execute(
        "INSERT INTO {segment_churn_model} (scope, fit) VALUES ('value_cuts', ?) "
        "ON CONFLICT (scope) DO UPDATE SET fit = excluded.fit",
        (orjson.dumps(dict(cuts)).decode(),),
    )


def load_value_cuts(tx: Tx) -> dict[str, int]:
    """The cuts kept by :func:`keep_value_cuts` (empty before the first fit)."""
    row = tx.fetchone("SELECT fit FROM {segment_churn_model} WHERE scope = 'value_cuts'")
    return {} if row is None else {c: int(v) for c, v in orjson.loads(row[0]).items()}


def keep_fit(tx: Tx, envelope: Envelope) -> None:
    """Keep a ``model.fitted`` event's version as the newest fit (the segments read model's
    ``segment_churn_model``: one row)."""
    fit = {**envelope.data, "version": envelope.version, "as_of": utc_text(envelope.occurred_at)}
    tx.execute(
        "INSERT INTO {segment_churn_model} (scope, fit) VALUES ('churn', ?) "
        "ON CONFLICT (scope) DO UPDATE SET fit = excluded.fit",
        (orjson.dumps(fit).decode(),),
    )


def load_fit(tx: Tx) -> FittedVersion | None:
    """The newest fit kept by :func:`keep_fit`, or None before the first."""
    row = tx.fetchone("SELECT fit FROM {segment_churn_model} WHERE scope = 'churn'")
    return None if row is None else fit_from(row[0])


def fit_from(text: str) -> FittedVersion:
    """A fit as :func:`keep_fit` stored it (JSON text)."""
    fit = orjson.loads(text)
    at = datetime.fromisoformat(fit["as_of"])
    return FittedVersion.of(fit, int(fit["version"]), at, "", at)
