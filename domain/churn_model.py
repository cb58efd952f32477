"""The churn model as versioned data: every fit of BG/NBD (:mod:`domain.btyd`) is an event.

A :class:`ChurnModel` is an aggregate with a fixed id (one model: ``churn``), one
``model.fitted`` event per fit (version 1, 2, …) holding the parameters ``r``, ``alpha``, ``a``,
``b`` (time unit: days), the instant the base was summarised at (``as_of``, business time: the
event's ``occurred_at``), how many customers it was fitted on, its log-likelihood and the
horizon ``horizon_days`` of "expected purchases in the next N days", and (version 2 of the
event) the Gamma-Gamma spend model fitted beside it per currency (``spend``: ``{currency: {p, q,
gamma, customers, log_likelihood}}``, :mod:`domain.gamma_gamma`; empty when none could be
fitted). A customer's churn risk is a pure function of a fitted version and their purchase
instants (:func:`risk`), their value of that and their spend (:mod:`domain.customer_value`),
so every read model computes them from events alone.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar
from uuid import UUID, uuid5

from eventsourcing.domain import Aggregate

from domain.btyd import Fit, Parameters, Summary, expected_purchases, p_alive
from domain.errors import InvalidInput
from domain.event_base import LoggedEvent, Meta
from domain.gamma_gamma import SpendParameters
from domain.values import check_aware, utc_text

MODEL_NAME = "churn"
MODEL_ID = uuid5(UUID("7c1e2f3a-9b4d-5e6f-8a7b-1c2d3e4f5a6b"), f"model/{MODEL_NAME}")
DEFAULT_HORIZON_DAYS = 90
MAX_HORIZON_DAYS = 3650
DAY_SECONDS = 86_400.0


def check_horizon(days: object) -> int:
    """A horizon in whole days, 1 to 3650, or :class:`InvalidInput` naming ``horizon_days``."""
    if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= MAX_HORIZON_DAYS:
        raise InvalidInput(
            "horizon_days", f"must be a whole number of days, 1 to {MAX_HORIZON_DAYS}"
        )
    return days


@dataclass(frozen=True)
class FittedVersion:
    """One fit: ``version``, ``parameters``, ``as_of``, ``customers``, ``log_likelihood``,
    ``horizon_days``, who asked (``actor``), when it was recorded, and the ``spend`` model
    per currency (``{currency: {p, q, gamma, customers, log_likelihood}}``)."""

    version: int
    parameters: Parameters
    as_of: datetime
    customers: int
    log_likelihood: float
    horizon_days: int
    actor: str
    recorded_at: datetime
    spend: dict[str, dict[str, Any]] = field(default_factory=dict)

    def spend_parameters(self, currency: str) -> SpendParameters | None:
        """The spend model fitted for ``currency``, or None if there is none."""
        found = self.spend.get(currency)
        return None if found is None else SpendParameters(found["p"], found["q"], found["gamma"])

    def view(self) -> dict[str, Any]:
        """The public shape (``clientele models show``)."""
        p = self.parameters
        return {
            "model": MODEL_NAME,
            "version": self.version,
            "method": "bg/nbd",
            "parameters": {"r": p.r, "alpha": p.alpha, "a": p.a, "b": p.b},
            "time_unit": "day",
            "as_of": utc_text(self.as_of),
            "customers": self.customers,
            "log_likelihood": self.log_likelihood,
            "horizon_days": self.horizon_days,
            "spend": {"method": "gamma-gamma", "currencies": self.spend},
            "actor": self.actor,
            "recorded_at": utc_text(self.recorded_at),
        }

    @classmethod
    def of(
        cls, data: dict[str, Any], version: int, at: datetime, actor: str, recorded: datetime
    ) -> FittedVersion:
        """From a ``model.fitted`` event's data (its envelope's or its own fields)."""
        params = Parameters(data["r"], data["alpha"], data["a"], data["b"])
        return cls(
            version,
            params,
            at,
            int(data["customers"]),
            float(data["log_likelihood"]),
            int(data["horizon_days"]),
            actor,
            recorded,
            dict(data.get("spend") or {}),
        )


class ChurnModel(Aggregate):
    """The fitted versions of the churn model."""

    versions: list[FittedVersion]

    def __init__(self) -> None:
        """State is set by the events' ``apply``."""

    class Fitted(LoggedEvent):
        """Version 2 added ``spend`` (upcast: none fitted)."""

        TYPE: ClassVar[str] = "model.fitted"
        class_version = 2
        r: float
        alpha: float
        a: float
        b: float
        customers: int
        log_likelihood: float
        horizon_days: int
        spend: dict[str, dict[str, Any]]

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            state.setdefault("spend", {})

        def apply(self, aggregate: Any) -> None:
            if not hasattr(aggregate, "versions"):
                aggregate.versions = []
            aggregate.versions.append(self.fitted())

        def fitted(self) -> FittedVersion:
            """The version this event records."""
            fields = {k: getattr(self, k) for k in FITTED_FIELDS}
            return FittedVersion.of(
                fields, self.originator_version, self.occurred_at, self.actor, self.timestamp
            )

    class FirstFitted(Fitted, Aggregate.Created):
        pass

    @classmethod
    def first(cls, fit: Fit, horizon_days: int, meta: Meta, spend: Spend) -> ChurnModel:
        """The model's first fitted version; ``meta.occurred_at`` is the fit's ``as_of``."""
        fields = _fields(fit, horizon_days, meta, spend)
        return cls._create(cls.FirstFitted, id=MODEL_ID, **fields)

    def refit(self, fit: Fit, horizon_days: int, meta: Meta, spend: Spend) -> None:
        """A new fitted version."""
        self.trigger_event(self.Fitted, **_fields(fit, horizon_days, meta, spend))

    def in_force(self, at: datetime, known_at: datetime | None = None) -> FittedVersion | None:
        """The newest version fitted as of ``at`` or before (None before the first), among
        those recorded by ``known_at`` (when given: what was known then)."""
        found = [
            v
            for v in self.versions
            if v.as_of <= at and (known_at is None or v.recorded_at <= known_at)
        ]
        return max(found, key=lambda v: (v.as_of, v.version)) if found else None


FITTED_FIELDS = ("r", "alpha", "a", "b", "customers", "log_likelihood", "horizon_days", "spend")
Spend = dict[str, dict[str, Any]]
"""Spend models by currency: ``{currency: {p, q, gamma, customers, log_likelihood}}``."""


def _fields(fit: Fit, horizon_days: int, meta: Meta, spend: Spend) -> dict[str, Any]:
    check_aware("as_of", meta.occurred_at)
    p = fit.parameters
    return {
        "r": float(p.r),
        "alpha": float(p.alpha),
        "a": float(p.a),
        "b": float(p.b),
        "customers": fit.customers,
        "log_likelihood": float(fit.log_likelihood),
        "horizon_days": check_horizon(horizon_days),
        "spend": {c: dict(sorted(spend[c].items())) for c in sorted(spend)},
        **meta.fields(),
    }


EVENT_CLASSES: tuple[type[LoggedEvent], ...] = (ChurnModel.FirstFitted, ChurnModel.Fitted)
EVENT_TYPES = frozenset(cls.TYPE for cls in EVENT_CLASSES)


# ------------------------------------------------------------------------------ risk


def _day(moment: datetime) -> float:
    """An instant as days since the epoch (UTC), whole days for a purchase's UTC day."""
    aware = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return aware.timestamp() / DAY_SECONDS


def summary_of(purchases: Iterable[datetime], as_of: datetime) -> Summary | None:
    """The ``(x, t_x, T)`` in days of a customer's purchase instants up to ``as_of``, on the
    RFM definitions (:mod:`projections.rfm`): purchases floored to their UTC day, ``x`` the
    distinct purchase days after the first, ``t_x`` and ``T`` whole days from the first
    purchase day to the last and to ``as_of``'s day. None without a purchase by then."""
    end = _day(as_of) // 1
    days = sorted({_day(at) // 1 for at in purchases if _day(at) // 1 <= end})
    if not days:
        return None
    return Summary(len(days) - 1, days[-1] - days[0], end - days[0])


def risk(
    model: FittedVersion, purchases: Iterable[datetime], at: datetime | None = None
) -> dict[str, Any] | None:
    """A customer's churn risk under ``model``: ``{model_version, as_of, p_alive,
    expected_purchases, horizon_days, frequency, recency, T}``, evaluated at ``at`` (time
    travel: the purchases up to then count), by default at the later of the model's ``as_of``
    and the customer's last purchase (a purchase after the fit counts at once); probabilities
    and expectations as decimal strings (6 places; the expectation null where its closed form
    cannot be evaluated, :func:`domain.btyd.expected_purchases`). None without any purchase (by ``at``)."""
    bought = list(purchases)
    if not bought:
        return None
    at = max(model.as_of, *bought) if at is None else at
    summary = summary_of(bought, at)
    if summary is None:
        return None
    try:
        expected: float | None = expected_purchases(model.parameters, summary, model.horizon_days)
    except ArithmeticError:  # no closed form for these parameters: said as unknown, not a failure
        expected = None
    return {
        "model": MODEL_NAME,
        "model_version": model.version,
        "as_of": utc_text(at),
        "p_alive": f"{p_alive(model.parameters, summary):.6f}",
        "expected_purchases": None if expected is None else f"{expected:.6f}",
        "horizon_days": model.horizon_days,
        "frequency": summary.frequency,
        "recency": int(summary.recency),
        "T": int(summary.T),
    }
