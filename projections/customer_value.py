"""The customer value read model: each live customer's historical and predicted value per
currency (:mod:`domain.customer_value`), kept as events come; value deciles and top customers.

Tables:

* ``value_customers`` — per customer, ``live`` (active or churned);
* ``value_orders`` — per customer and held order: ``currency``, ``amount``, ``cost`` (null:
  unknown) and ``occurred_at``. A refund removes the order, a merge copies the duplicate's
  orders it moved to the survivor (``duplicate_absorbed`` names them; their cost is read from
  the duplicate's rows), an unmerge removes what it gives back, an erasure removes them all;
* ``value_scores`` — per live customer and currency: ``historical`` and ``predicted`` (decimal
  text, and in cents for ordering), ``basis``, ``expected_purchases``, ``expected_spend``,
  ``model_version``;
* ``value_model`` — the churn model's newest fit (a ``model.fitted`` event, with its spend
  models). A fit re-scores every live customer; a customer's event re-scores that customer.

A merge reads another customer's rows and a fit concerns everyone, so the projection is fed
(and rebuilt) in log order (``Projector.log_order``): live equals a rebuild.

Deciles (answers): over the customers with a predicted value in a currency, sorted ascending
``v[1] <= … <= v[N]``, the nine cuts are ``v[ceil(k N / 10)]`` (k = 1..9) and a customer's
decile is 1 + the number of cuts strictly below their value (:mod:`projections.rfm`'s rule
with ten groups: equal values, equal deciles). ``high_value`` = decile 10.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import orjson

from domain import churn_model
from domain.churn_model import FittedVersion
from domain.customer_value import Order, Value, decile_cuts, order_cost, value
from domain.values import utc_text
from infra.envelope import Envelope
from infra.read_tx import Tx
from infra.sql_chunks import among, chunks
from projections.framework import MERGES, Projector
from projections.order_book import OrderBook

DECILES = 10
SCORE_COLUMNS = (
    *("customer_id", "currency", "historical", "historical_cents", "basis", "predicted"),
    *("predicted_cents", "expected_purchases", "expected_spend", "model_version"),
)


_Row = tuple[str, str, str | None, str]  # (currency, amount, cost, occurred_at)
_State = OrderBook[_Row]


class ValueProjector(Projector):
    """Keeps customer value from purchases, refunds, merges, erasure and the model's fits."""

    name = "value"
    tables = ("value_customers", "value_orders", "value_scores", "value_model")
    schema = (
        """CREATE TABLE IF NOT EXISTS {value_customers} (
            customer_id TEXT PRIMARY KEY, live INTEGER NOT NULL)""",
        """CREATE TABLE IF NOT EXISTS {value_orders} (
            customer_id TEXT NOT NULL, order_id TEXT NOT NULL, currency TEXT NOT NULL,
            amount TEXT NOT NULL, cost TEXT, occurred_at TEXT NOT NULL,
            PRIMARY KEY (customer_id, order_id))""",
        """CREATE TABLE IF NOT EXISTS {value_scores} (
            customer_id TEXT NOT NULL, currency TEXT NOT NULL, historical TEXT NOT NULL,
            historical_cents BIGINT NOT NULL, basis TEXT NOT NULL, predicted TEXT,
            predicted_cents BIGINT, expected_purchases TEXT, expected_spend TEXT,
            model_version INTEGER, PRIMARY KEY (customer_id, currency))""",
        """CREATE INDEX IF NOT EXISTS {value_scores}_by_predicted
            ON {value_scores} (currency, predicted_cents, customer_id)""",
        "CREATE TABLE IF NOT EXISTS {value_model} (scope TEXT PRIMARY KEY, fit TEXT NOT NULL)",
    )
    handles = frozenset(
        {
            "customer.registered",
            "customer.purchase_recorded",
            "customer.purchase_refunded",
            "customer.duplicate_absorbed",
            "customer.merged_into",
            "customer.unmerged",
            "customer.erased",
            *churn_model.EVENT_TYPES,
        }
    )
    log_order = True  # a merge reads the duplicate's orders; a fit re-scores everyone
    crosses = MERGES

    def apply(self, tx: Tx, envelopes: Sequence[Envelope]) -> None:
        states: dict[str, _State] = {}
        for index, e in enumerate(envelopes):
            if e.type in churn_model.EVENT_TYPES:  # everyone, under the new fit
                _save(tx, states, load_fit(tx))
                states = {}
                _keep_fit(tx, e)
                _rescore_everyone(tx)
                continue
            key = e.customer_key
            if key not in states:  # the first of a run: load every customer up to the next fit
                states.update(_load(tx, _named_until_fit(envelopes, index, states)))
            state = states[key]
            if e.type == "customer.duplicate_absorbed":
                duplicate = e.data["duplicate_id"]
                if duplicate not in states:
                    states.update(_load(tx, [duplicate]))
                theirs = states[duplicate].orders
                for order_id, p in e.data["purchases"].items():
                    at = utc_text(datetime.fromisoformat(p["occurred_at"]))
                    cost = theirs[order_id][2] if order_id in theirs else None
                    state.orders[order_id] = (p["currency"], str(p["amount"]), cost, at)
            else:
                state.fold(e, _order_row)
        _save(tx, states, load_fit(tx))


def _named_until_fit(
    envelopes: Sequence[Envelope], start: int, loaded: dict[str, _State]
) -> list[str]:
    """The customers (and merged duplicates) named from ``envelopes[start]`` up to the next
    fit, not yet ``loaded``: one set-based load per run, not two queries per customer."""
    named: set[str] = set()
    for e in envelopes[start:]:
        if e.type in churn_model.EVENT_TYPES:
            break
        named.add(e.customer_key)
        if e.type == "customer.duplicate_absorbed":
            named.add(e.data["duplicate_id"])
    return sorted(named - loaded.keys())


def _order_row(e: Envelope) -> _Row:
    cost = order_cost(e.data.get("items") or [])
    return (
        e.data["currency"],
        str(e.data["amount"]),
        None if cost is None else str(cost),
        utc_text(e.occurred_at),
    )


def _load(tx: Tx, ids: list[str]) -> dict[str, _State]:
    found = {c: _State() for c in ids}
    for condition, params in among(tx, "customer_id", ids):
        for customer, live in tx.fetchall(
            f"SELECT customer_id, live FROM {{value_customers}} WHERE {condition}", params
        ):
            found[customer].live = bool(live)
        for customer, order_id, currency, amount, cost, at in tx.fetchall(
            "SELECT customer_id, order_id, currency, amount, cost, occurred_at "
            f"FROM {{value_orders}} WHERE {condition}",
            params,
        ):
            found[customer].orders[order_id] = (currency, amount, cost, at)
    return found


def _scores(customer: str, state: _State, fit: FittedVersion | None) -> list[tuple[Any, ...]]:
    if not state.live:
        return []
    by_currency: dict[str, list[Order]] = {}
    for currency, amount, cost, at in state.orders.values():
        order = Order(
            Decimal(amount), None if cost is None else Decimal(cost), datetime.fromisoformat(at)
        )
        by_currency.setdefault(currency, []).append(order)
    rows = []
    for currency, orders in sorted(by_currency.items()):
        found = value(orders, fit, currency)
        if found is not None:
            rows.append(_row(customer, currency, found))
    return rows


def _row(customer: str, currency: str, v: Value) -> tuple[Any, ...]:
    predicted = None if v.predicted is None else str(v.predicted)
    return (
        customer,
        currency,
        str(v.historical),
        int(v.historical.scaleb(2)),
        v.basis,
        predicted,
        None if v.predicted is None else int(v.predicted.scaleb(2)),
        None if v.expected_purchases is None else f"{v.expected_purchases:.6f}",
        None if v.expected_spend is None else f"{v.expected_spend:.2f}",
        v.model_version,
    )


def _save(tx: Tx, states: dict[str, _State], fit: FittedVersion | None) -> None:
    """Write ``states`` and their scores under ``fit``."""
    ids = sorted(states)
    if not ids:
        return
    tx.upsert(
        "value_customers",
        ("customer_id",),
        ("customer_id", "live"),
        [(c, int(states[c].live)) for c in ids],
    )
    _delete(tx, "value_orders", ids)
    orders = [
        (c, order_id, *row) for c in ids for order_id, row in sorted(states[c].orders.items())
    ]
    tx.insert(
        "value_orders",
        ("customer_id", "order_id", "currency", "amount", "cost", "occurred_at"),
        orders,
    )
    _write_scores(tx, states, fit)


def _write_scores(tx: Tx, states: dict[str, _State], fit: FittedVersion | None) -> None:
    ids = sorted(states)
    _delete(tx, "value_scores", ids)
    tx.insert("value_scores", SCORE_COLUMNS, [r for c in ids for r in _scores(c, states[c], fit)])


def _delete(tx: Tx, table: str, ids: list[str]) -> None:
    for condition, params in among(tx, "customer_id", ids):
        tx.execute(f"DELETE FROM {{{table}}} WHERE {condition}", params)


def _rescore_everyone(tx: Tx) -> None:
    """Every live customer's scores again, under the fit just kept."""
    fit = load_fit(tx)
    live = sorted(
        c for (c,) in tx.fetchall("SELECT customer_id FROM {value_customers} WHERE live = 1")
    )
    for chunk in chunks(live):
        _write_scores(tx, _load(tx, list(chunk)), fit)


def _keep_fit(tx: Tx, envelope: Envelope) -> None:
    fit = {**envelope.data, "version": envelope.version, "as_of": utc_text(envelope.occurred_at)}
    tx.execute(
        "INSERT INTO {value_model} (scope, fit) VALUES ('churn', ?) "
        "ON CONFLICT (scope) DO UPDATE SET fit = excluded.fit",
        (orjson.dumps(fit).decode(),),
    )


def load_fit(tx: Tx) -> FittedVersion | None:
    """The newest fit kept, or None before the first."""
    row = tx.fetchone("SELECT fit FROM {value_model} WHERE scope = 'churn'")
    if row is None:
        return None
    fit = orjson.loads(row[0])
    at = datetime.fromisoformat(fit["as_of"])
    return FittedVersion.of(fit, int(fit["version"]), at, "", at)


# ------------------------------------------------------------------------------ the fit's base


def spend_base(tx: Tx, day: date) -> dict[str, list[tuple[int, float]]]:
    """Per currency, the ``(frequency, monetary)`` of every live customer as of ``day`` from
    the analytics read model's RFM rows (what the spend model is fitted on)."""
    found: dict[str, list[tuple[int, float]]] = {}
    for currency, frequency, cents in tx.fetchall(
        "SELECT currency, frequency, monetary_cents FROM {analytics_rfm} "
        "WHERE live = 1 AND day <= ? AND until > ? ORDER BY currency, customer_id",
        (day.isoformat(), day.isoformat()),
    ):
        found.setdefault(currency, []).append((int(frequency), int(cents) / 100))
    return found


# ------------------------------------------------------------------------------ answers

ITEM = (
    *("customer_id", "historical", "basis", "predicted", "expected_purchases"),
    *("expected_spend", "model_version"),
)
ORDERS = {"predicted": "predicted_cents", "historical": "historical_cents"}


def currencies(tx: Tx) -> dict[str, int]:
    """How many live customers have a value in each currency."""
    rows = tx.fetchall(
        "SELECT currency, COUNT(*) FROM {value_scores} GROUP BY currency ORDER BY currency"
    )
    return {currency: int(n) for currency, n in rows}


@dataclass(frozen=True)
class Distribution:
    """The customers of one currency ranked by ``by`` (``predicted`` or ``historical``)."""

    currency: str
    by: str
    cuts: tuple[int, ...]  # nine decile cuts, in cents
    deciles: list[dict[str, Any]]
    totals: dict[str, str]
    population: int

    def view(self) -> dict[str, Any]:
        return {
            "currency": self.currency,
            "by": self.by,
            "population": self.population,
            "totals": self.totals,
            "cuts": [_money(c) for c in self.cuts],
            "high_value_from": _money(self.cuts[-1]) if self.cuts else None,
            "deciles": self.deciles,
        }


def distribution(tx: Tx, currency: str, by: str) -> Distribution:
    """Deciles (module docstring) of the customers with a ``by`` value in ``currency``: per
    decile ``{decile, customers, historical, predicted}`` (sums), and the totals."""
    column = ORDERS[by]
    rows = tx.fetchall(
        f"SELECT {column}, historical_cents, predicted_cents FROM {{value_scores}} "
        f"WHERE currency = ? AND {column} IS NOT NULL ORDER BY {column}",
        (currency,),
    )
    cuts = decile_cuts(int(r[0]) for r in rows)
    n = len(rows)
    groups: dict[int, list[int]] = {d: [0, 0, 0] for d in range(1, DECILES + 1)}
    for key, historical, predicted in rows:
        group = groups[decile_of(int(key), cuts)]
        group[0] += 1
        group[1] += int(historical)
        group[2] += int(predicted or 0)
    deciles = [
        {"decile": d, "customers": c, "historical": _money(h), "predicted": _money(p)}
        for d, (c, h, p) in groups.items()
    ]
    totals = {
        "historical": _money(sum(g[1] for g in groups.values())),
        "predicted": _money(sum(g[2] for g in groups.values())),
    }
    return Distribution(currency, by, cuts, deciles, totals, n)


def decile_of(cents: int, cuts: Sequence[int]) -> int:
    """1 + the number of cuts strictly below ``cents``."""
    return 1 + sum(1 for cut in cuts if cents > cut)


def top(
    tx: Tx, found: Distribution, *, after: tuple[int, str] | None, limit: int
) -> list[tuple[dict[str, Any], tuple[int, str]]]:
    """Customers by ``found.by`` descending, then customer id, after the key ``after``
    (``(cents, customer id)`` of the previous page's last), each with its ``decile`` and
    ``high_value``, and its key."""
    column = ORDERS[found.by]
    where = ""
    params: list[Any] = [found.currency]
    if after is not None:
        where = f" AND ({column} < ? OR ({column} = ? AND customer_id > ?))"
        params += [after[0], after[0], after[1]]
    rows = tx.fetchall(
        f"SELECT {', '.join(ITEM)}, {column} FROM {{value_scores}} WHERE currency = ? "
        f"AND {column} IS NOT NULL{where} ORDER BY {column} DESC, customer_id LIMIT ?",
        [*params, limit],
    )
    items = []
    for row in rows:
        item = dict(zip(ITEM, row[:-1], strict=True))
        decile = decile_of(int(row[-1]), found.cuts)
        key = (int(row[-1]), str(item["customer_id"]))
        items.append(({**item, "decile": decile, "high_value": decile == DECILES}, key))
    return items


def _money(cents: int) -> str:
    return str(Decimal(cents).scaleb(-2).quantize(Decimal("0.01")))
