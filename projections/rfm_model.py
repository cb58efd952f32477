"""The RFM read model: per-customer purchase-day summaries, and paged RFM answers over them.

Kept by the analytics projector (:mod:`projections.analytics`) from the same events as
``analytics_purchases``; scored with :mod:`projections.rfm` (the definitions live there).

Tables:

* ``analytics_rfm`` — one row per (customer, currency, UTC purchase day) with the customer's
  summary *as of that day*: ``first_day``, ``frequency`` (repeat purchase days so far),
  ``repeat_spend``, ``monetary_cents`` (the reported monetary value in cents), and ``until``,
  the next purchase day (``9999-12-31`` for the latest). An observation end on day D reads,
  per customer, the one row with ``day <= D < until``: its summary as of D, whatever D is.
  ``live`` is 1 while the customer is active or churned (merged and erased customers are no
  part of RFM). A customer's rows are written again from ``analytics_purchases`` whenever an
  event changes their purchases or liveness: reads never fold purchases.
* ``analytics_rfm_values`` — per currency, how many live customers' latest rows hold each
  value of R (the day as an ordinal), F and M (cents): while an observation end is on or
  after everyone's last purchase day — the usual case — the cuts are read from these few
  rows (:func:`rfm.cuts_of_counts`). A count table (:mod:`projections.counts`).
* ``analytics_rfm_changes`` — how many events changed ``analytics_rfm`` and the sum of their
  store positions. Both are sums over the log's events, whatever order they are applied in,
  so they are the same live and rebuilt; queries key their cache on them.

Queries: the population of a (currency, observation day) is its customers' rows as of that
day; its quintile cuts (:func:`rfm.cuts`, three small tuples) are computed once per
(observation day, ``analytics_rfm_changes``) and cached per read store, so a page is an
indexed range of rows in customer-id order, scored with the cuts (filters by score or group
become conditions on the rows' values).
"""

from __future__ import annotations

import threading
from collections import Counter, OrderedDict, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any
from weakref import WeakKeyDictionary

from infra.envelope import Envelope
from infra.read_tx import Tx
from infra.readstore import ReadStore
from infra.sql_chunks import among
from projections import rfm
from projections.counts import add_counts

OPEN = "9999-12-31"  # ``until`` of a customer's latest purchase day
TABLES = ("analytics_rfm", "analytics_rfm_values", "analytics_rfm_changes")
SCHEMA = (
    """CREATE TABLE IF NOT EXISTS {analytics_rfm} (
        customer_id TEXT NOT NULL, currency TEXT NOT NULL, day TEXT NOT NULL,
        until TEXT NOT NULL, first_day TEXT NOT NULL, frequency INTEGER NOT NULL,
        repeat_spend TEXT NOT NULL, monetary_cents BIGINT NOT NULL, live INTEGER NOT NULL,
        PRIMARY KEY (customer_id, currency, day))""",
    """CREATE TABLE IF NOT EXISTS {analytics_rfm_values} (
        currency TEXT NOT NULL, score TEXT NOT NULL, value BIGINT NOT NULL,
        customers BIGINT NOT NULL, PRIMARY KEY (currency, score, value))""",
    """CREATE TABLE IF NOT EXISTS {analytics_rfm_changes} (
        scope TEXT PRIMARY KEY, events BIGINT NOT NULL, positions BIGINT NOT NULL)""",
)
# Events that change a customer's purchases or whether they are live.
CHANGES = frozenset(
    {
        "customer.purchase_recorded",
        "customer.purchase_refunded",
        "customer.duplicate_absorbed",
        "customer.unmerged",
        "customer.merged_into",
        "customer.erased",
    }
)
COLUMNS = (
    *("customer_id", "currency", "day", "until", "first_day", "frequency"),
    *("repeat_spend", "monetary_cents", "live"),
)
ROW = "customer_id, day, first_day, frequency, monetary_cents"  # what an answer reads
AS_OF = "live = 1 AND day <= ? AND until > ?"  # a customer's row as of an observation day


# ------------------------------------------------------------------------------ writing


def update(tx: Tx, events: Sequence[Envelope], live: Mapping[str, bool]) -> None:
    """After the analytics tables took ``events`` (new, of :data:`CHANGES`): write the rows of
    their customers again; ``live`` says which of them are live now."""
    if not events:
        return
    customers = sorted({e.customer_key for e in events})
    spend: dict[tuple[str, str], dict[date, Decimal]] = defaultdict(lambda: defaultdict(Decimal))
    values: Counter[tuple[str, str, int]] = Counter()
    for condition, params in among(tx, "customer_id", customers):
        for currency, last, frequency, cents in tx.fetchall(
            "SELECT currency, day, frequency, monetary_cents FROM {analytics_rfm} "
            f"WHERE {condition} AND until = '{OPEN}' AND live = 1",
            params,
        ):
            values.subtract(_values(currency, last, int(frequency), int(cents)))
        tx.execute(f"DELETE FROM {{analytics_rfm}} WHERE {condition}", params)
        for customer, currency, at, amount in tx.fetchall(
            "SELECT customer_id, currency, occurred_at, amount FROM {analytics_purchases} "
            f"WHERE {condition}",
            params,
        ):
            spend[customer, currency][date.fromisoformat(at[:10])] += Decimal(amount)
    rows = []
    for (customer, currency), days in sorted(spend.items()):
        summary = rfm.running(days)
        ends = [d.day.isoformat() for d in summary[1:]] + [OPEN]
        for d, until in zip(summary, ends, strict=True):
            row = (customer, currency, d.day.isoformat(), until, d.first_day.isoformat())
            rows.append((*row, d.frequency, str(d.repeat_spend), _cents(d), int(live[customer])))
        if live[customer]:
            latest = summary[-1]
            values.update(
                _values(currency, latest.day.isoformat(), latest.frequency, _cents(latest))
            )
    tx.insert("analytics_rfm", COLUMNS, rows)
    add_counts(tx, "analytics_rfm_values", ("currency", "score", "value"), "customers", values)
    tx.execute(
        "INSERT INTO {analytics_rfm_changes} AS c (scope, events, positions) VALUES ('all', ?, ?) "
        "ON CONFLICT (scope) DO UPDATE SET events = c.events + excluded.events, "
        "positions = c.positions + excluded.positions",
        (len(events), sum(e.position for e in events)),
    )


def _cents(day: rfm.Day) -> int:
    return int(Decimal(day.monetary).scaleb(2))


def _values(currency: str, last: str, frequency: int, cents: int) -> list[tuple[str, str, int]]:
    """The ``analytics_rfm_values`` keys a live customer's latest row counts in."""
    ordinal = date.fromisoformat(last).toordinal()
    return [(currency, "r", ordinal), (currency, "f", frequency), (currency, "m", cents)]


# ------------------------------------------------------------------------------ reading


@dataclass(frozen=True)
class Population:
    """The customers scored in one currency as of one observation day, by their cuts."""

    currency: str
    size: int
    r: tuple[str, ...]  # cuts of the last purchase day (ISO dates)
    f: tuple[int, ...]  # cuts of frequency
    m: tuple[int, ...]  # cuts of monetary, in cents

    def cuts(self) -> dict[str, list[Any]]:
        """The cuts in the answers' units: days, repeat days, decimal strings."""
        return {"r": list(self.r), "f": list(self.f), "m": [_money(c) for c in self.m]}


Populations = dict[str, Population]


def populations(tx: Tx, day: date) -> Populations:
    """Every currency's population as of ``day`` (uncached).

    While no live customer's last purchase in a currency is after ``day``, everyone's latest
    row is their row as of ``day``: the cuts come from ``analytics_rfm_values`` (a few rows
    per distinct value). Otherwise that currency's rows as of ``day`` are all read.
    """
    counted: dict[str, dict[str, list[tuple[int, int]]]] = defaultdict(lambda: defaultdict(list))
    for currency, score, value, customers in tx.fetchall(
        "SELECT currency, score, value, customers FROM {analytics_rfm_values} "
        "ORDER BY currency, score, value"
    ):
        counted[currency][score].append((int(value), int(customers)))
    found: Populations = {}
    for currency, scores in counted.items():
        if date.fromordinal(scores["r"][-1][0]) > day:
            continue  # read below
        r = [(date.fromordinal(ordinal).isoformat(), n) for ordinal, n in scores["r"]]
        size = sum(n for _, n in r)
        cuts = (
            rfm.cuts_of_counts(r),
            rfm.cuts_of_counts(scores["f"]),
            rfm.cuts_of_counts(scores["m"]),
        )
        found[currency] = Population(currency, size, *cuts)
    later = sorted(set(counted) - set(found))
    if later:
        found |= read_as_of(tx, day, later)
    return dict(sorted(found.items()))


def read_as_of(tx: Tx, day: date, currencies: Sequence[str]) -> Populations:
    """The populations of ``currencies`` as of ``day``, from all of their rows."""
    values: dict[str, tuple[list[str], list[int], list[int]]] = defaultdict(lambda: ([], [], []))
    for currency, last, frequency, cents in tx.fetchall(
        f"SELECT currency, day, frequency, monetary_cents FROM {{analytics_rfm}} WHERE {AS_OF} "
        f"AND currency IN ({','.join('?' * len(currencies))})",
        (day.isoformat(), day.isoformat(), *currencies),
    ):
        r, f, m = values[currency]
        r.append(last)
        f.append(int(frequency))
        m.append(int(cents))
    return {
        c: Population(c, len(r), rfm.cuts(r), rfm.cuts(f), rfm.cuts(m))
        for c, (r, f, m) in values.items()
    }


class Rankings:
    """:func:`populations` cached by (tables, observation day, ``analytics_rfm_changes``)."""

    def __init__(self, entries: int = 32) -> None:
        self._entries = entries
        self._cache: OrderedDict[tuple[Any, ...], Populations] = OrderedDict()
        self._lock = threading.Lock()

    def populations(self, tx: Tx, day: date) -> Populations:
        changes = _changes(tx)
        key = (tuple(sorted(tx.tables.items())), day, changes)
        with self._lock:
            if (found := self._cache.get(key)) is not None:
                self._cache.move_to_end(key)
                return found
        found = populations(tx, day)
        if _changes(tx) == changes:  # no commit in between (statements may see newer rows)
            with self._lock:
                self._cache[key] = found
                while len(self._cache) > self._entries:
                    self._cache.popitem(last=False)
        return found


_RANKINGS: WeakKeyDictionary[ReadStore, Rankings] = WeakKeyDictionary()
_RANKINGS_LOCK = threading.Lock()


def rankings(store: ReadStore) -> Rankings:
    """The cache of ``store``'s populations (one per read store and process)."""
    with _RANKINGS_LOCK:
        return _RANKINGS.setdefault(store, Rankings())


def _changes(tx: Tx) -> tuple[int, int]:
    row = tx.fetchone("SELECT events, positions FROM {analytics_rfm_changes} WHERE scope = 'all'")
    return (int(row[0]), int(row[1])) if row else (0, 0)


@dataclass(frozen=True)
class Filters:
    """Scores (1-5) and a group a page's customers must have; None: any."""

    r: int | None = None
    f: int | None = None
    m: int | None = None
    group: str | None = None


def page(
    tx: Tx,
    population: Population,
    day: date,
    *,
    after: str = "",
    limit: int | None = None,
    filters: Filters = Filters(),
) -> list[dict[str, Any]]:
    """Scored customers of ``population`` as of ``day``, by customer id after ``after``.

    Filters become ranges of the rows' values: a value scores s when it lies above the cut
    s - 1 (for s > 1) and at or below the cut s (for s < 5).
    """
    where: list[str] = []
    params: list[Any] = []
    for column, limits, score in (
        ("day", population.r, filters.r),
        ("frequency", population.f, filters.f),
        ("monetary_cents", population.m, filters.m),
    ):
        if score is not None:
            where.append(_scores(column, score))
            params += _bounds(limits, score)
    if filters.group is not None:
        pairs = [(r, f) for r in rfm.SCORES for f in rfm.SCORES if rfm.group(r, f) == filters.group]
        where.append(
            "("
            + " OR ".join(f"({_scores('day', r)} AND {_scores('frequency', f)})" for r, f in pairs)
            + ")"
        )
        for r, f in pairs:
            params += [*_bounds(population.r, r), *_bounds(population.f, f)]
    conditions = "".join(f" AND {w}" for w in where)
    bounded = limit is not None
    rows = tx.fetchall(
        f"SELECT {ROW} FROM {{analytics_rfm}} WHERE currency = ? AND {AS_OF} "
        f"AND customer_id > ?{conditions} ORDER BY customer_id{' LIMIT ?' if bounded else ''}",
        [population.currency, day.isoformat(), day.isoformat(), after, *params]
        + ([limit] if bounded else []),
    )
    return [item(row, population, day) for row in rows]


def _scores(column: str, score: int) -> str:
    """The condition that ``column`` scores ``score``; its values are :func:`_bounds`."""
    lower = [f"{column} > ?"] if score > 1 else []
    upper = [f"{column} <= ?"] if score < 5 else []
    return " AND ".join([*lower, *upper])


def _bounds(limits: Sequence[Any], score: int) -> list[Any]:
    return ([limits[score - 2]] if score > 1 else []) + ([limits[score - 1]] if score < 5 else [])


def customer(tx: Tx, population: Population, customer_id: str, day: date) -> dict[str, Any] | None:
    """One customer's scored row as of ``day``, or None if not part of ``population``."""
    row = tx.fetchone(
        f"SELECT {ROW} FROM {{analytics_rfm}} WHERE customer_id = ? AND currency = ? AND {AS_OF}",
        (customer_id, population.currency, day.isoformat(), day.isoformat()),
    )
    return None if row is None else item(row, population, day)


def currencies_of(tx: Tx, customer_id: str, day: date) -> list[str]:
    """The currencies a live customer bought in up to ``day``."""
    rows = tx.fetchall(
        f"SELECT DISTINCT currency FROM {{analytics_rfm}} WHERE customer_id = ? AND {AS_OF} "
        "ORDER BY currency",
        (customer_id, day.isoformat(), day.isoformat()),
    )
    return [currency for (currency,) in rows]


ITEM = ("customer_id", "frequency", "recency", "T", "monetary", "r", "f", "m", "group")


def item(row: Iterable[Any], population: Population, day: date) -> dict[str, Any]:
    """``{customer_id, frequency, recency, T, monetary, r, f, m, group}`` of a row."""
    customer_id, last, first, frequency, cents = row
    r = rfm.score_of(last, population.r)
    f = rfm.score_of(int(frequency), population.f)
    first_day = date.fromisoformat(first)
    return {
        "customer_id": customer_id,
        "frequency": int(frequency),
        "recency": (date.fromisoformat(last) - first_day).days,
        "T": (day - first_day).days,
        "monetary": _money(int(cents)),
        "r": r,
        "f": f,
        "m": rfm.score_of(int(cents), population.m),
        "group": rfm.group(r, f),
    }


def _money(cents: int) -> str:
    return str(Decimal(cents).scaleb(-2))
