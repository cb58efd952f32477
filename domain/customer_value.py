"""Customer value in one currency (pure): historical value and predicted 12-month value.

* **historical value**: the sum over the customer's held orders (refunds removed) of the
  order's margin when its cost is known — every line item has a ``unit_cost``; the cost is
  ``sum(quantity * unit_cost)``, quantity 1 when absent — else its amount (revenue).
  ``basis`` says which: ``margin`` (every order's cost known), ``revenue`` (none) or ``mixed``.
* **predicted value** over :data:`HORIZON_DAYS` days: BG/NBD's expected purchases
  (:func:`domain.btyd.expected_purchases`, the churn model's fitted version) times Gamma-Gamma's
  expected spend per purchase (:func:`domain.gamma_gamma.expected_spend`, the spend model the
  same version fitted for the currency), both from the customer's purchases in the currency
  on the RFM definitions (purchase days; ``monetary`` = mean spend of the repeat days),
  evaluated at the later of the fit's ``as_of`` and the last purchase (like the churn risk: a
  pure function of the log). Revenue, undiscounted. None without a fit or a spend model for
  the currency (or in the rare case the expectation's series does not converge).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from domain.btyd import expected_purchases
from domain.churn_model import FittedVersion, summary_of
from domain.gamma_gamma import expected_spend

HORIZON_DAYS = 365
CENT = Decimal("0.01")


@dataclass(frozen=True)
class Order:
    """A held order in one currency: ``amount``, ``cost`` (None: unknown), ``occurred_at``."""

    amount: Decimal
    cost: Decimal | None
    occurred_at: datetime


def order_cost(items: Sequence[Mapping[str, Any]]) -> Decimal | None:
    """An order's cost from its line items, or None unless every item has a ``unit_cost``."""
    if not items or any(item.get("unit_cost") is None for item in items):
        return None
    return sum(
        (Decimal(str(item.get("quantity") or 1)) * Decimal(item["unit_cost"]) for item in items),
        Decimal(0),
    )


@dataclass(frozen=True)
class Value:
    """One customer's value in a currency (module docstring); money rounded half-even to cents."""

    historical: Decimal
    basis: str
    predicted: Decimal | None
    expected_purchases: float | None
    expected_spend: float | None
    model_version: int | None


def value(orders: Iterable[Order], fit: FittedVersion | None, currency: str) -> Value | None:
    """The value of a customer's ``orders`` in ``currency`` under ``fit`` (None: no order)."""
    held = list(orders)
    if not held:
        return None
    known = [o.cost is not None for o in held]
    basis = "margin" if all(known) else "mixed" if any(known) else "revenue"
    historical = sum((o.amount - (o.cost or Decimal(0)) for o in held), Decimal(0))
    purchases = expected = spend = None
    spend_model = fit.spend_parameters(currency) if fit else None
    if fit is not None and spend_model is not None:
        instants = [o.occurred_at for o in held]
        at = max(fit.as_of, *instants)
        summary = summary_of(instants, at)
        assert summary is not None
        try:
            purchases = expected_purchases(fit.parameters, summary, HORIZON_DAYS)
        except ArithmeticError:
            purchases = None
        spend = expected_spend(spend_model, summary.frequency, float(_monetary(held)))
        if purchases is not None and spend is not None:
            expected = Decimal(repr(purchases * spend)).quantize(CENT)
    return Value(
        historical.quantize(CENT),
        basis,
        expected,
        purchases,
        spend,
        fit.version if fit and spend_model else None,
    )


def predicted_by_currency(
    orders: Iterable[tuple[str, Decimal, datetime]], fit: FittedVersion
) -> dict[str, Decimal]:
    """The predicted value (module docstring) of ``(currency, amount, occurred_at)`` orders in
    each currency that has one under ``fit``."""
    by_currency: dict[str, list[Order]] = defaultdict(list)
    for currency, amount, at in orders:
        by_currency[currency].append(Order(amount, None, at))
    found = {}
    for currency, held in sorted(by_currency.items()):
        v = value(held, fit, currency)
        if v is not None and v.predicted is not None:
            found[currency] = v.predicted
    return found


def decile_cuts(values: Iterable[int]) -> tuple[int, ...]:
    """The nine decile cuts of ``values``: the values at the 1-based positions
    ``ceil(k N / 10)``, k = 1..9, of their ascending order (empty when there are none). A value
    is in decile 1 + the number of cuts strictly below it; ``high_value`` is decile 10."""
    ordered = sorted(values)
    n = len(ordered)
    return tuple(ordered[(k * n + 9) // 10 - 1] for k in range(1, 10)) if n else ()


def _monetary(orders: Sequence[Order]) -> Decimal:
    """Mean spend of the repeat purchase days (UTC days; 0 without a repeat day), to cents
    like the RFM ``monetary`` the spend model was fitted on."""
    days: dict[Any, Decimal] = defaultdict(Decimal)
    for o in orders:
        days[o.occurred_at.astimezone(UTC).date()] += o.amount
    repeat = [days[d] for d in sorted(days)[1:]]
    return (sum(repeat, Decimal(0)) / len(repeat)).quantize(CENT) if repeat else Decimal(0)
