"""Fitting the churn model: summarise the base as of an instant, fit BG/NBD (and, per currency,
the Gamma-Gamma spend model beside it), record the fit.

``clientele models fit`` fits on demand; the policy runner (``clientele policies run``) also
fits every ``CLIENTELE_MODEL_FIT_SECONDS`` (as of now). The base is the live customers with a
purchase by ``as_of``, summarised from the analytics read model (:mod:`projections.churn`) on
the RFM definitions (:func:`domain.churn_model.summary_of`); the fit (:mod:`domain.btyd_fit`)
needs the ``models`` extra (scipy), and says so when it is missing. The spend model of a
currency is fitted on its live customers' RFM ``frequency`` and ``monetary`` as of ``as_of``
(:func:`projections.customer_value.spend_base`); a currency it cannot be fitted for (too few
repeat customers) is left out of the version (a log line says why).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from types import ModuleType

import structlog

from commands.handler_context import MAX_CLOCK_SKEW
from commands.models import ModelService, RecordedFit
from commands.service import Context
from domain.btyd import Summary
from domain.churn_model import DEFAULT_HORIZON_DAYS, Spend, check_horizon, summary_of
from domain.errors import DomainError, InvalidInput
from infra.readstore import ReadStore
from projections.churn import base_purchases
from projections.customer_value import spend_base

log = structlog.get_logger(__name__)
ACTOR = "clientele:model-churn"


class ModelsExtraMissing(DomainError):
    code = "models-extra-missing"

    def __init__(self) -> None:
        super().__init__(
            "fitting the churn model needs scipy: pip install 'clientele[models]' "
            "(reading p_alive from a recorded fit does not)"
        )


class CannotFit(DomainError):
    code = "cannot-fit"


def _fitting() -> tuple[ModuleType, ModuleType]:
    try:
        from domain import btyd_fit, gamma_gamma_fit  # noqa: PLC0415 - the optional extra
    except ImportError as error:
        raise ModelsExtraMissing() from error
    return btyd_fit, gamma_gamma_fit


class ModelFitter:
    """Fits the churn model on the base in ``read_store`` and records it with ``models``."""

    def __init__(
        self,
        read_store: ReadStore,
        models: ModelService,
        *,
        on_commit: Callable[[], None] | None = None,
    ) -> None:
        self.read_store = read_store
        self.models = models
        self.on_commit = on_commit

    def summaries(self, as_of: datetime) -> list[Summary]:
        """The base's ``(x, t_x, T)`` as of ``as_of`` (customers without a purchase by then
        are left out)."""
        with self.read_store.snapshot() as tx:
            found = [summary_of(instants, as_of) for _, instants in base_purchases(tx)]
        return [s for s in found if s is not None]

    def spend(self, gamma_gamma_fit: ModuleType, as_of: datetime) -> Spend:
        """The spend model of every currency that can be fitted as of ``as_of``."""
        with self.read_store.snapshot() as tx:
            bases = spend_base(tx, as_of.astimezone(UTC).date())
        found: Spend = {}
        for currency, pairs in sorted(bases.items()):
            try:
                fitted = gamma_gamma_fit.fit(pairs)
            except gamma_gamma_fit.SpendFitError as error:
                log.info("model.spend_skipped", currency=currency, reason=str(error))
                continue
            p = fitted.parameters
            found[currency] = {
                "p": p.p,
                "q": p.q,
                "gamma": p.gamma,
                "customers": fitted.customers,
                "log_likelihood": fitted.log_likelihood,
            }
        return found

    def fit(
        self,
        as_of: datetime | None = None,
        horizon_days: int = DEFAULT_HORIZON_DAYS,
        context: Context | None = None,
    ) -> RecordedFit:
        """Fit as of ``as_of`` (default now; at most the accepted clock skew ahead) and record
        the fit as the model's next version. :class:`InvalidInput` for a bad ``as_of`` or
        ``horizon_days``, :class:`CannotFit` for a base too small to fit,
        :class:`ModelsExtraMissing` without scipy."""
        check_horizon(horizon_days)
        moment = as_of or datetime.now(UTC)
        if moment.tzinfo is None:
            raise InvalidInput("as_of", "needs a UTC offset")
        if moment > datetime.now(UTC) + MAX_CLOCK_SKEW:
            raise InvalidInput("as_of", "is in the future: a fit summarises what has happened")
        btyd_fit, gamma_gamma_fit = _fitting()
        summaries = self.summaries(moment)
        try:
            result = btyd_fit.fit(summaries)
        except btyd_fit.FitError as error:
            raise CannotFit(str(error)) from None
        recorded = self.models.record(
            result,
            horizon_days=horizon_days,
            as_of=moment,
            context=context or Context(actor=ACTOR),
            spend=self.spend(gamma_gamma_fit, moment),
        )
        if self.on_commit is not None:
            self.on_commit()
        log.info("model.fitted", **recorded.view())
        return recorded

    def fit_now(self) -> int:
        """The periodic fit (as of now, the latest horizon); returns the version recorded, or
        0 when the base cannot be fitted yet or the ``models`` extra is missing (a warning; the
        next period tries again — these are not failures to retry at once)."""
        latest = self.models.latest()
        horizon = latest.horizon_days if latest else DEFAULT_HORIZON_DAYS
        try:
            return self.fit(horizon_days=horizon).version.version
        except (CannotFit, ModelsExtraMissing) as error:
            log.warning("model.fit_skipped", reason=str(error))
            return 0
