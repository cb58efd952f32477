"""Policy commands: record a new version of a policy document (an event in the store), and
read policies back from the store (they are few and are their own source of truth; see
:mod:`domain.policy`). A concurrent writer that commits first makes the store refuse our
event; the command is then retried against fresh state (bounded)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from eventsourcing.application import AggregateNotFoundError
from eventsourcing.persistence import IntegrityError

from commands.service import Context
from domain.errors import ConcurrentWrite, DomainError
from domain.event_base import Meta
from domain.policy import Policy, PolicyVersion
from infra.store import EventStore


class PolicyNotFound(DomainError):
    code = "not-found"


class PolicyVersionConflict(DomainError):
    """The expected version (If-Match) is not the policy's current one."""

    code = "version-conflict"

    def __init__(self, name: str, expected: int, actual: int) -> None:
        super().__init__(
            f"policy {name} is at version {actual}, not {expected}",
            policy=name,
            expected_version=expected,
            actual_version=actual,
        )


@dataclass(frozen=True)
class Recorded:
    """The policy's current version after a define, whether it changed, and the position of
    that version's event."""

    version: PolicyVersion
    changed: bool
    position: int

    def view(self) -> dict[str, Any]:
        return {**self.version.view(), "changed": self.changed, "position": self.position}


class PolicyService:
    """Records policy versions in ``store`` (no read model is fed from them)."""

    def __init__(self, store: EventStore, *, retries: int = 5) -> None:
        self.store = store
        self.retries = retries

    def get(self, name: str) -> Policy | None:
        """The policy called ``name`` (a known name, else :class:`InvalidInput`), or None if
        it was never defined."""
        try:
            found: Any = self.store.repository.get(Policy.id_for(name))
        except AggregateNotFoundError:
            return None
        assert isinstance(found, Policy)
        return found

    def version(self, name: str, version: int | None = None) -> PolicyVersion:
        """One version (default: the newest), or :class:`PolicyNotFound`."""
        policy = self.get(name)
        if policy is None:
            raise PolicyNotFound(f"policy {name} has never been defined", policy=name)
        if version is None:
            return policy.current
        if not 1 <= version <= len(policy.versions):
            raise PolicyNotFound(f"policy {name} has no version {version}", policy=name)
        return policy.versions[version - 1]

    def define(
        self,
        name: str,
        document: object,
        context: Context,
        *,
        effective_at: datetime | None = None,
        expected_version: int | None = None,
    ) -> Recorded:
        """Record ``document`` as the next version of policy ``name``, applying from
        ``effective_at`` (default: now). Validation errors are :class:`InvalidInput` naming
        the field (``document.at_risk.min_days``); an unchanged document records nothing;
        ``expected_version`` (0: not defined yet) guards against lost updates."""
        aggregate_id = Policy.id_for(name)
        for _ in range(self.retries + 1):
            policy = self.get(name)
            current = 0 if policy is None else policy.version
            if expected_version is not None and expected_version != current:
                raise PolicyVersionConflict(name, expected_version, current)
            meta = Meta(
                context.actor,
                context.correlation_id,
                context.causation_id,
                effective_at or datetime.now(UTC),
            )
            if policy is None:
                policy = Policy.define(name, document, meta)
            elif not policy.change(document, meta):
                position = self.store.position_of(aggregate_id, policy.version)
                assert position is not None
                return Recorded(policy.current, False, position)
            try:
                recordings = self.store.save(policy)
            except IntegrityError:
                continue
            position = max(r.notification.id for r in recordings)
            return Recorded(policy.current, True, position)
        raise ConcurrentWrite(f"gave up after {self.retries + 1} conflicting attempts")
