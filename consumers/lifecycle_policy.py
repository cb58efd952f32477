"""The lifecycle policy's process manager: reacts to purchases and to the passage of business
time, and decides by sending ordinary commands through the command side.

* **reacting**: it follows the store's notification log from its checkpoint
  (``policy_checkpoints``, beside the event store), and for each purchase (or merge, unmerge,
  reactivation) decides for that customer as of the event's business time;
* **sweeping**: :meth:`LifecycleRunner.sweep` decides for every customer as of a business time
  ``T`` (``clientele policies sweep --at T``, and periodically in ``clientele policies run``);
* **simulating**: :meth:`LifecycleRunner.simulate` lists what a sweep would change, changing
  nothing.

A batch of customers' histories is one query (:func:`infra.bulk_load.histories`).

Decisions are :func:`domain.lifecycle.settle` of facts folded from the customer's events and
the policy version in force at the decision's business time: a pure function of the event log
and ``T``. Each is sent as ``lifecycle`` (or ``churn``) dated at its decision point, with the
customer's version as expected version and an idempotency key derived from (policy version,
customer, rule, decision point), so re-running, two runners at once or a redelivered event never
record a change twice; the reason names the rule and the policy version. A reaction's events
carry the purchase's event id as ``causation_id``; a sweep's, ``policy-sweep:<T>`` as
``correlation_id``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import structlog
from eventsourcing.utils import get_topic

from commands import messages as m
from commands.handler_context import MAX_CLOCK_SKEW
from commands.models import ModelService
from commands.policies import PolicyService
from commands.service import CommandService, Context
from consumers.policy_checkpoints import PolicyCheckpoints
from domain import events as ev
from domain.churn_model import ChurnModel
from domain.customer import Customer
from domain.errors import InvalidInput, VersionConflict
from domain.lifecycle import POLICY_NAME, Decision, LifecyclePolicy, facts_of, settle
from domain.policy import Policy
from domain.values import LifecycleStage, utc_text
from infra.bulk_load import histories
from infra.envelope import event_id
from infra.readstore import ReadStore
from infra.resilience import Stopped, Supervisor
from infra.store import EventStore

log = structlog.get_logger(__name__)
RETRIES = 3
ACTOR = f"clientele:policy-{POLICY_NAME}"
REGISTERED = [get_topic(ev.Registered)]
History = tuple[Customer, list[ev.CustomerEvent]]  # a customer's state and events, oldest first
REACTS_TO = [
    get_topic(cls)
    for cls in (ev.PurchaseRecorded, ev.Reactivated, ev.DuplicateAbsorbed, ev.Unmerged)
]


@dataclass(frozen=True)
class Planned:
    """One decision for one customer: from which stage, under which policy version."""

    customer_id: UUID
    previous_stage: str
    decision: Decision
    version: int

    def view(self) -> dict[str, Any]:
        return {
            "customer_id": str(self.customer_id),
            "from": self.previous_stage,
            "to": self.decision.stage,
            "rule": self.decision.rule,
            "policy_version": self.version,
            "at": utc_text(self.decision.at),
        }

    def command(self, expected_version: int) -> m.Command:
        """The ordinary command carrying the decision."""
        d = self.decision
        key = f"policy:{POLICY_NAME}:v{self.version}:{self.customer_id}:{d.rule}:{utc_text(d.at)}"
        common: dict[str, Any] = {
            "customer_id": self.customer_id,
            "expected_version": expected_version,
            "idempotency_key": key,
            "occurred_at": d.at,
            "reason": d.reason(self.version),
        }
        if d.stage == LifecycleStage.CHURNED:
            return m.ChurnCustomer(**common)
        return m.ChangeLifecycleStage(stage=d.stage, **common)


@dataclass
class SweepReport:
    """What a sweep did: customers looked at, decisions sent, of which accepted as new,
    replayed (already recorded) and rejected (a concurrent change; decided again next time)."""

    at: str
    customers: int = 0
    decisions: int = 0
    recorded: int = 0
    replayed: int = 0
    rejected: int = 0
    problems: list[dict[str, Any]] = field(default_factory=list)


class LifecycleRunner:
    """Decides lifecycle stages for the customers in ``store`` by ``commands``. Another
    policy's runner (:mod:`consumers.loyalty_policy`) overrides :attr:`name`, :attr:`actor`,
    :attr:`reacts_to` and :meth:`decisions`."""

    name = POLICY_NAME
    decides = "lifecycle stages"
    actor = ACTOR
    reacts_to = REACTS_TO

    def __init__(
        self,
        store: EventStore,
        commands: CommandService,
        policies: PolicyService,
        checkpoints: ReadStore | None = None,
        *,
        models: ModelService | None = None,
        batch_size: int = 500,
        poll_interval: float = 1.0,
        sweep_seconds: float = 3600.0,
    ) -> None:
        self.store = store
        self.commands = commands
        self.policies = policies
        self.checkpoints = checkpoints
        self._checkpoints = None if checkpoints is None else PolicyCheckpoints(checkpoints)
        self.models = models
        self.batch_size = batch_size
        self.poll_interval = poll_interval
        self.sweep_seconds = sweep_seconds
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._documents: dict[int, LifecyclePolicy] = {}

    # ------------------------------------------------------------------ deciding

    def plan(
        self, history: History, at: datetime, policy: Policy, model: ChurnModel | None = None
    ) -> tuple[int, list[Planned]]:
        """(the customer's version, the decisions due for them by ``at``) under the version of
        ``policy`` in force at ``at`` (none before its first version) and the churn ``model``'s
        version fitted as of ``at`` (for the p_alive at-risk rule)."""
        in_force = policy.in_force(at)
        if in_force is None:
            return 0, []
        customer, events = history
        facts = facts_of(customer.status, customer.lifecycle_stage, customer.purchases, events)
        document = self._document(in_force.version, in_force.document)
        planned = []
        fitted = None if model is None else model.in_force(at)
        for decision in settle(facts, document, in_force.effective_at, at, fitted):
            planned.append(Planned(customer.id, facts.stage, decision, in_force.version))
            facts = facts.after(decision)
        return customer.version, planned

    def _document(self, version: int, document: dict[str, Any]) -> LifecyclePolicy:
        """The version's document parsed (once per version: a sweep asks per customer)."""
        if (parsed := self._documents.get(version)) is None:
            parsed = self._documents[version] = LifecyclePolicy.model_validate(document)
        return parsed

    def histories(self, customer_ids: list[UUID]) -> Iterator[History]:
        """The customers among ``customer_ids`` folded from their events, with the events:
        one read per 500 customers (:func:`infra.bulk_load.histories`), never one each."""
        for _, events in histories(self.store, customer_ids):
            customer: Any = None
            for event in events:
                customer = event.mutate(customer)
            if isinstance(customer, Customer):
                yield customer, events

    def pages(self) -> Iterator[list[UUID]]:
        """Every customer ever registered, in registration order, ``batch_size`` at a time."""
        after = 0
        while True:
            rows = self.store.backend.in_log_order(REGISTERED, after, self.batch_size)
            if rows:
                yield [UUID(str(notification.originator_id)) for notification, _ in rows]
            if len(rows) < self.batch_size:
                return
            after = rows[-1][0].id

    def policy(self) -> Policy | None:
        return self.policies.get(self.name)

    def model(self, policy: Policy) -> ChurnModel | None:
        """The churn model, when some version of ``policy`` uses ``at_risk.p_alive_below``."""
        if self.models is None or not any(
            v.document.get("at_risk", {}).get("p_alive_below") is not None for v in policy.versions
        ):
            return None
        return self.models.get()

    def simulate(self, at: datetime) -> Iterator[Any]:
        """What a sweep at ``at`` would change; nothing is recorded."""
        policy = self.policy()
        if policy is None:
            return
        model = self.model(policy)
        for page in self.pages():
            for history in self.histories(page):
                yield from self.decisions(history, at, policy, model)[1]

    def decisions(
        self, history: History, at: datetime, policy: Policy, model: ChurnModel | None
    ) -> tuple[int, list[Any]]:
        """(the customer's version, what this policy decides for them by ``at``)."""
        return self.plan(history, at, policy, model)

    # ------------------------------------------------------------------- sending

    def sweep(
        self, at: datetime | None = None, on_customer: Callable[[int], None] | None = None
    ) -> SweepReport:
        """Decide for every customer as of business time ``at`` (default: now; at most the
        accepted clock skew ahead) and send the decisions, a batch of customers at a time; the
        progress is logged every ``batch_size`` customers (``policy.sweep_progress``) and told
        to ``on_customer``. An interrupted sweep is resumed by running it again: what it
        recorded is found recorded (the stage moved, the keys replay), the rest is sent."""
        moment = at or datetime.now(UTC)
        if moment > datetime.now(UTC) + MAX_CLOCK_SKEW:
            raise InvalidInput("at", "is in the future: simulate it instead")
        report = SweepReport(utc_text(moment))
        policy = self.policy()
        if policy is None:
            return report
        context = Context(actor=self.actor, correlation_id=f"policy-sweep:{report.at}")
        model = self.model(policy)
        for page in self.pages():
            report.customers += len(page)
            self._decide(page, moment, policy, model, report=report, context=context)
            log.info(
                "policy.sweep_progress",
                policy=self.name,
                customers=report.customers,
                recorded=report.recorded,
            )
            if on_customer is not None:
                on_customer(len(page))
        log.info("policy.swept", policy=self.name, **vars(report) | {"problems": None})
        return report

    def _commands(
        self, history: History, at: datetime, policy: Policy, model: ChurnModel | None
    ) -> list[m.Command]:
        version, planned = self.decisions(history, at, policy, model)
        return [p.command(version + index) for index, p in enumerate(planned)]

    def _decide(
        self,
        customers: list[UUID],
        at: datetime,
        policy: Policy,
        model: ChurnModel | None,
        *,
        report: SweepReport,
        context: Context,
    ) -> None:
        """Send the decisions due by ``at`` for ``customers`` in one batch. A customer whose
        decision a concurrent change refused (the expected version moved: another runner, a
        person, a purchase) is decided again from their new facts, up to :data:`RETRIES`
        times, so a reaction is not left for the next sweep."""
        pending = customers
        for attempt in range(RETRIES + 1):
            found = self.histories(pending)  # one read for the batch
            batch = [c for h in found for c in self._commands(h, at, policy, model)]
            if not batch:
                return
            pending = []
            for command, outcome in zip(
                batch, self.commands.execute_batch(batch, context), strict=True
            ):
                conflicted = command.customer_id
                if isinstance(outcome.problem, VersionConflict) and attempt < RETRIES:
                    if conflicted is not None and conflicted not in pending:
                        pending.append(conflicted)
                    continue
                report.decisions += 1
                if outcome.problem is not None:
                    report.rejected += 1
                    report.problems.append(outcome.problem.to_dict())
                elif outcome.replayed:
                    report.replayed += 1
                else:
                    report.recorded += 1
            if not pending:
                return

    # ------------------------------------------------------------------ reacting

    def position(self) -> int:
        """The checkpoint: events up to here have been reacted to."""
        return 0 if self._checkpoints is None else self._checkpoints.position(self.name)

    def react_once(self) -> int:
        """React to the next batch of purchases (and merges, reactivations) after the
        checkpoint, each as of its own business time; returns how many were read."""
        assert self.checkpoints is not None, "reacting needs a checkpoint store"
        rows = self.store.backend.in_log_order(self.reacts_to, self.position(), self.batch_size)
        policy = self.policy()
        report = SweepReport("react")
        if policy is not None:
            model = self.model(policy)
            for notification, _ in rows:
                event = self.store.mapper.to_domain_event(notification)
                assert isinstance(event, ev.CustomerEvent)
                cause = str(event_id(event.originator_id, event.originator_version))
                context = Context(actor=self.actor, causation_id=cause)
                self._decide(
                    [event.originator_id],
                    event.occurred_at,
                    policy,
                    model,
                    report=report,
                    context=context,
                )
        if rows:
            self.advance_to(rows[-1][0].id)
        if report.decisions:
            log.info("policy.reacted", policy=self.name, **vars(report) | {"problems": None})
        return len(rows)

    def advance_to(self, position: int) -> None:
        """Move the checkpoint to ``position``: the events up to it count as reacted to (what
        a completed sweep as of a later time makes redundant, e.g. on a base loaded before
        the runner first ran)."""
        assert self._checkpoints is not None, "reacting needs a checkpoint store"
        self._checkpoints.advance(self.name, position)

    def run(self) -> None:
        """React as events come (woken by :meth:`wake`, else polling every ``poll_interval``
        seconds) and, in a thread of its own, sweep as of now at start and every
        ``sweep_seconds``, until :meth:`stop`: a sweep over a large base takes minutes and
        must not hold reactions back (the two may decide for one customer at once: the
        expected version and the idempotency key settle it). An outage is waited out and a
        failing step retried with backoff (:class:`~infra.resilience.Supervisor`)."""
        sweeper = threading.Thread(
            target=self._sweep_loop, name=f"policy-{self.name}-sweep", daemon=True
        )
        sweeper.start()
        try:
            Supervisor(f"policy {self.name}", self._stop).run(self._react)
        finally:
            self._stop.set()
            sweeper.join(30)

    def _react(self) -> None:
        while self.react_once() >= self.batch_size and not self._stop.is_set():
            pass
        self._wake.wait(self.poll_interval)
        self._wake.clear()

    def _sweep_loop(self) -> None:
        supervisor = Supervisor(f"policy {self.name} sweep", self._stop)
        while not self._stop.is_set():
            try:
                supervisor.call(self.sweep)
            except Stopped:
                return
            self._stop.wait(self.sweep_seconds)

    def wake(self) -> None:
        """React now (called after a write is noticed)."""
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
