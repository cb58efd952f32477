"""Model commands: record a fit of the churn model as its next version (an event in the store),
and read the fitted versions back from the store (they are few and are their own source of
truth, like policies; see :mod:`domain.churn_model`). A concurrent fit that commits first makes
the store refuse ours; it is then recorded against fresh state (bounded retries)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from eventsourcing.application import AggregateNotFoundError
from eventsourcing.persistence import IntegrityError

from commands.service import Context
from domain.btyd import Fit
from domain.churn_model import MODEL_ID, ChurnModel, FittedVersion, Spend
from domain.errors import ConcurrentWrite, DomainError
from domain.event_base import Meta
from infra.store import EventStore


class ModelNotFitted(DomainError):
    code = "not-found"


@dataclass(frozen=True)
class RecordedFit:
    """The version a fit was recorded as, and the position of its event."""

    version: FittedVersion
    position: int

    def view(self) -> dict[str, Any]:
        return {**self.version.view(), "position": self.position}


class ModelService:
    """Records and reads the churn model's fitted versions in ``store``."""

    def __init__(self, store: EventStore, *, retries: int = 5) -> None:
        self.store = store
        self.retries = retries
        self._seen: tuple[int, ChurnModel | None] | None = None  # (read after position, model)

    def get(self) -> ChurnModel | None:
        """The churn model, or None if it was never fitted (read from the store)."""
        try:
            found: Any = self.store.repository.get(MODEL_ID)
        except AggregateNotFoundError:
            return None
        assert isinstance(found, ChurnModel)
        return found

    def as_seen(self, head: int) -> ChurnModel | None:
        """The churn model as of the store's look at its log up to at least ``head`` (a store
        position the caller has read; :meth:`EventStore.forget_erased` looks that far first,
        free when it already has): kept between calls, read again only when a look passed a
        model event newer than the kept copy. A fit recorded by any process is used from the
        next look on; no clock decides. Shared by every caller: read it, never change it
        (:meth:`record` changes its own, from :meth:`get`)."""
        self.store.forget_erased(head)
        seen = self._seen
        if seen is not None and seen[0] >= self.store.newest_fit:
            return seen[1]
        watched = self.store.watched  # taken before the read, which holds every fit up to it
        model = self.get()
        self._seen = (watched, model)
        return model

    def latest(self) -> FittedVersion | None:
        """The newest fitted version (its event alone is read: for every profile read), or
        None if the model was never fitted."""
        stored = self.store.recorder.select_events(MODEL_ID, desc=True, limit=1)
        if not stored:
            return None
        event = self.store.mapper.to_domain_event(stored[0])
        assert isinstance(event, ChurnModel.Fitted)
        return event.fitted()

    def version(self, version: int | None = None) -> FittedVersion:
        """One fitted version (default: the newest), or :class:`ModelNotFitted`."""
        model = self.get()
        if model is None:
            raise ModelNotFitted("the churn model has never been fitted (clientele models fit)")
        if version is None:
            return model.versions[-1]
        if not 1 <= version <= len(model.versions):
            raise ModelNotFitted(f"the churn model has no version {version}")
        return model.versions[version - 1]

    def record(
        self,
        fit: Fit,
        *,
        horizon_days: int,
        as_of: datetime,
        context: Context,
        spend: Spend | None = None,
    ) -> RecordedFit:
        """Record ``fit``, made on the base as of ``as_of``, as the model's next version, with
        the ``spend`` models fitted beside it (by currency)."""
        meta = Meta(context.actor, context.correlation_id, context.causation_id, as_of)
        for _ in range(self.retries + 1):
            model = self.get()
            if model is None:
                model = ChurnModel.first(fit, horizon_days, meta, spend or {})
            else:
                model.refit(fit, horizon_days, meta, spend or {})
            try:
                recordings = self.store.save(model)
            except IntegrityError:
                continue
            position = max(r.notification.id for r in recordings)
            return RecordedFit(model.versions[-1], position)
        raise ConcurrentWrite(f"gave up after {self.retries + 1} conflicting attempts")
