"""Policies as versioned data: each change an event with its version, document, actor and
effective time; the version in force at a business time; the service's expected version."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from commands.policies import PolicyNotFound, PolicyService, PolicyVersionConflict
from commands.service import Context
from domain.errors import InvalidInput
from domain.event_base import Meta
from domain.policy import Policy
from infra.store import EventStore

T0 = datetime(2025, 1, 1, tzinfo=UTC)


def meta(actor: str, at: datetime) -> Meta:
    return Meta(actor, "corr", None, at)


def test_every_change_is_an_event_with_version_document_actor_and_effective_time() -> None:
    policy = Policy.define("lifecycle", {}, meta("ops", T0))
    assert not policy.change({}, meta("ops", T0 + timedelta(days=1)))  # unchanged: nothing
    assert policy.change({"active": {"window_days": 60}}, meta("ana", T0 + timedelta(days=2)))
    events = policy.collect_events()
    assert [e.TYPE for e in events] == ["policy.defined", "policy.changed"]  # type: ignore[attr-defined]
    first, second = policy.versions
    assert (first.version, first.actor, first.effective_at) == (1, "ops", T0)
    assert (second.version, second.actor) == (2, "ana")
    assert second.document["active"] == {"window_days": 60, "min_purchases": 2}
    assert policy.in_force(T0 - timedelta(seconds=1)) is None
    assert policy.in_force(T0 + timedelta(days=1)) == first
    assert policy.in_force(T0 + timedelta(days=2)) == second


def test_a_change_never_reaches_back_before_the_current_version() -> None:
    policy = Policy.define("lifecycle", {}, meta("ops", T0))
    with pytest.raises(InvalidInput) as refused:
        policy.change({"active": {"window_days": 60}}, meta("ops", T0 - timedelta(days=1)))
    assert refused.value.field == "effective_at"
    with pytest.raises(InvalidInput) as invalid:
        policy.change({"active": {"window_days": "60"}}, meta("ops", T0))
    assert invalid.value.field == "document.active.window_days"


def test_the_service_records_versions_and_guards_with_the_expected_version(
    store: EventStore,
) -> None:
    service = PolicyService(store)
    ctx = Context(actor="admin")
    with pytest.raises(PolicyNotFound):
        service.version("lifecycle")
    with pytest.raises(PolicyVersionConflict):
        service.define("lifecycle", {}, ctx, expected_version=1)
    first = service.define("lifecycle", {}, ctx, effective_at=T0, expected_version=0)
    assert (first.version.version, first.changed) == (1, True)
    again = service.define("lifecycle", {}, ctx)
    assert (again.version.version, again.changed, again.position) == (1, False, first.position)
    with pytest.raises(PolicyVersionConflict) as conflict:
        service.define("lifecycle", {"active": {"window_days": 7}}, ctx, expected_version=0)
    assert conflict.value.details["actual_version"] == 1
    second = service.define("lifecycle", {"active": {"window_days": 7}}, ctx, expected_version=1)
    assert second.version.version == 2 and second.position > first.position
    assert service.version("lifecycle", 1).document["active"]["window_days"] == 90
    with pytest.raises(PolicyNotFound):
        service.version("lifecycle", 3)
