"""Policies as versioned data: every change of a policy document is an event.

A :class:`Policy` is an aggregate whose id is derived from its name (``lifecycle``; the kinds
are :data:`KINDS`, one pydantic model each), so each policy is one stream: ``policy.defined``
(version 1), then ``policy.changed`` for every change of the document (an unchanged document
records nothing). Each event holds the whole document in canonical form, who changed it
(``actor``), when it was recorded (``timestamp``) and from when it applies (``occurred_at``,
business time: its *effective time*). The version in force at a business time ``t`` is the
newest whose effective time is at or before ``t`` (:meth:`Policy.in_force`): a decision can
always be explained by the version it names, and a change never reaches back before its
effective time (effective times never go backwards).

Policy events live in the event store beside the customers' but are fed to no read model and
published on no topic: the policy runner reads them from the store.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar
from uuid import UUID, uuid5

from eventsourcing.domain import Aggregate
from pydantic import BaseModel, ValidationError

from domain.care import CarePolicy
from domain.errors import InvalidInput
from domain.event_base import LoggedEvent, Meta
from domain.lifecycle import LifecyclePolicy
from domain.loyalty import LoyaltyPolicy
from domain.values import check_aware

NAMESPACE = UUID("0b9a7f0e-64f4-5c1d-8a2e-5f3c9d2b7e11")
KINDS: dict[str, type[BaseModel]] = {
    "lifecycle": LifecyclePolicy,
    "loyalty": LoyaltyPolicy,
    "care": CarePolicy,
}
"""Policy name → the model its document must satisfy."""
POLICY_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,63}$")


def check_name(name: object) -> str:
    """A known policy name, or :class:`InvalidInput` naming ``name``."""
    if not isinstance(name, str) or name not in KINDS:
        raise InvalidInput("name", f"unknown policy {name!r}; one of {sorted(KINDS)}")
    return name


def parse_document(name: str, document: object) -> BaseModel:
    """The document of policy ``name`` as its model, or :class:`InvalidInput` naming the
    first offending field as a dotted path (``document.at_risk.min_days``)."""
    model = KINDS[check_name(name)]
    if not isinstance(document, dict):
        raise InvalidInput("document", "must be an object")
    try:
        parsed = model.model_validate(document)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(["document", *(str(part) for part in first["loc"])])
        message = str(first["msg"]).removeprefix("Value error, ")
        raise InvalidInput(where, message) from None
    problem = getattr(parsed, "first_problem", lambda: None)()
    if problem is not None:
        raise InvalidInput(f"document.{problem[0]}", problem[1])
    return parsed


def canonical(name: str, document: object) -> dict[str, Any]:
    """The document validated and fully expanded (defaults filled in): how it is stored."""
    dumped: dict[str, Any] = parse_document(name, document).model_dump(mode="json")
    return dumped


@dataclass(frozen=True)
class PolicyVersion:
    """One version of a policy: ``version`` (1, 2, …), the canonical ``document``, who changed
    it (``actor``), from when it applies (``effective_at``) and when it was recorded."""

    name: str
    version: int
    document: dict[str, Any]
    actor: str
    effective_at: datetime
    recorded_at: datetime

    def view(self) -> dict[str, Any]:
        """The public shape (``GET /v1/policies/{name}``)."""
        return {
            "name": self.name,
            "version": self.version,
            "document": self.document,
            "actor": self.actor,
            "effective_at": self.effective_at.isoformat(),
            "recorded_at": self.recorded_at.isoformat(),
        }


class Policy(Aggregate):
    """A named, versioned policy document."""

    name: str
    versions: list[PolicyVersion]

    def __init__(self) -> None:
        """State is set by the events' ``apply``."""

    class Defined(LoggedEvent, Aggregate.Created):
        TYPE: ClassVar[str] = "policy.defined"
        name: str
        document: dict[str, Any]

        def apply(self, aggregate: Any) -> None:
            aggregate.name = self.name
            aggregate.versions = []
            aggregate.add_version(self)

    class Changed(LoggedEvent):
        TYPE: ClassVar[str] = "policy.changed"
        name: str
        document: dict[str, Any]

        def apply(self, aggregate: Any) -> None:
            aggregate.add_version(self)

    def add_version(self, event: Policy.Defined | Policy.Changed) -> None:
        self.versions.append(
            PolicyVersion(
                self.name,
                event.originator_version,
                event.document,
                event.actor,
                event.occurred_at,
                event.timestamp,
            )
        )

    @staticmethod
    def id_for(name: str) -> UUID:
        """The aggregate id of a policy name (checked first)."""
        return uuid5(NAMESPACE, f"policy/{check_name(name)}")

    @classmethod
    def define(cls, name: str, document: object, meta: Meta) -> Policy:
        """A new policy (document validated, see :func:`parse_document`)."""
        check_aware("effective_at", meta.occurred_at)
        return cls._create(
            cls.Defined,
            id=cls.id_for(name),
            name=name,
            document=canonical(name, document),
            **meta.fields(),
        )

    def change(self, document: object, meta: Meta) -> bool:
        """A new version from ``meta.occurred_at`` on; False (and nothing recorded) when the
        document is unchanged. An effective time before the current version's is refused."""
        doc = canonical(self.name, document)
        current = self.versions[-1]
        if doc == current.document:
            return False
        if check_aware("effective_at", meta.occurred_at) < current.effective_at:
            raise InvalidInput(
                "effective_at",
                f"is before the effective time of version {current.version} "
                f"({current.effective_at.isoformat()}): a change never reaches back past it",
            )
        self.trigger_event(self.Changed, name=self.name, document=doc, **meta.fields())
        return True

    @property
    def current(self) -> PolicyVersion:
        return self.versions[-1]

    def in_force(self, at: datetime) -> PolicyVersion | None:
        """The newest version whose effective time is at or before ``at`` (None before the
        first)."""
        for version in reversed(self.versions):
            if version.effective_at <= at:
                return version
        return None


EVENT_CLASSES: tuple[type[LoggedEvent], ...] = (Policy.Defined, Policy.Changed)
