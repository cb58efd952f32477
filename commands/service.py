"""The application service: runs commands, singly or as a group-committed batch.

* idempotency: a command with an ``idempotency_key`` is executed once; the same key with the
  same request returns the first outcome, with a different request is refused;
* optimistic concurrency: ``expected_version`` is checked against the stored version; a
  concurrent writer that commits first makes the store refuse our transaction, and the whole
  unit is retried against fresh state (bounded);
* batches: all commands share one unit of work and one store transaction; a rejected command
  is rolled back in memory and reported, the others still commit;
* group commit: batches from concurrent callers share one store transaction (one lock, one
  commit) instead of queueing for the store one by one;
* bounded events: a command whose event the store refuses as too large
  (:class:`EventTooLarge`, checked where events are encoded anyway) is rejected alone and the
  unit is planned again without it, so nothing of it is recorded and the others commit;
* a merged customer is answered with the FINAL survivor of its merge chain;
* a registration whose external id a live customer already holds answers with that customer
  (``existing``) and records nothing, so a retried or re-imported registration never makes a
  twin (:func:`commands.handlers.register`).
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal
from uuid import UUID, uuid4

import structlog
from eventsourcing.persistence import IntegrityError

from commands.aggregate_cache import AggregateCache
from commands.handler_context import DEFAULT_BUSINESS_TIME_FLOOR, Env
from commands.handlers import HANDLERS
from commands.messages import Command, RegisterCustomer
from commands.unit_of_work import UnitOfWork
from domain.errors import ConcurrentWrite, CustomerMerged, DomainError, EventTooLarge
from domain.event_base import Meta
from domain.events import CustomerEvent
from domain.external_ids import normalise_ref
from domain.indexes import IdempotencyRecord
from domain.merging import PURCHASES_PER_PART
from domain.text_policy import Text, check_key, text_problem
from infra.metrics import COMMANDS
from infra.store import EventStore

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Context:
    """Who sends the command and which request or message it belongs to."""

    actor: str
    correlation_id: str = field(default_factory=lambda: str(uuid4()))
    causation_id: str | None = None

    def __post_init__(self) -> None:
        """Stored on every event: clean identifier text (:func:`domain.text_policy.check_key`)."""
        check_key("actor", self.actor)
        check_key("correlation_id", self.correlation_id)
        if self.causation_id is not None:
            check_key("causation_id", self.causation_id)


@dataclass(frozen=True)
class Outcome:
    """Result of one command: accepted with (customer, version, position) or rejected."""

    status: Literal["accepted", "rejected"]
    customer_id: UUID | None = None
    version: int | None = None
    position: int | None = None
    problem: DomainError | None = None
    replayed: bool = False
    events: tuple[str, ...] = ()
    existing: bool = False

    def to_dict(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"status": self.status}
        if self.customer_id is not None:
            doc |= {"customer_id": str(self.customer_id), "version": self.version}
            doc["position"] = self.position
        if self.existing:
            doc["existing"] = True
        if self.problem is not None:
            doc["problem"] = self.problem.to_dict()
        return doc


@dataclass
class _Planned:
    """An accepted command waiting for its position, which exists only after commit.

    The position is the newest of the command's *customer* events (index rows are invisible to
    read models, so a reader waiting for the position can always reach it). A replay or a no-op
    has no new events; ``refs`` names the (customer, version) pairs whose positions answer.
    """

    customer_id: UUID
    version: int
    events: list[CustomerEvent]
    refs: list[tuple[UUID, int]]
    replayed: bool = False
    existing: bool = False


class CommandService:
    """Executes commands against an :class:`EventStore`. ``merge_part_size``: purchases per
    merge/unmerge part (:func:`domain.merging.merge`; smaller only to exercise parts);
    ``clock``: the business time of commands that name none (aware UTC; default: now)."""

    def __init__(
        self,
        store: EventStore,
        *,
        default_region: str = "US",
        index_key: str = "clientele-dev-index-key",
        retries: int = 5,
        on_commit: Callable[[int], None] | None = None,
        group_limit: int = 1000,
        cache_bytes: int = 64 * 2**20,
        business_time_floor: datetime = DEFAULT_BUSINESS_TIME_FLOOR,
        merge_part_size: int = PURCHASES_PER_PART,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.store = store
        self.business_time_floor = business_time_floor
        self.merge_part_size = merge_part_size
        self.clock = clock
        self.on_commit = on_commit
        self.default_region = default_region
        self.index_key = index_key.encode()
        self.retries = retries
        self.group_limit = group_limit
        self.cache = AggregateCache(cache_bytes)  # used by the group-commit leader only
        self._turn = threading.Condition()
        self._queue: list[_Submitted] = []
        self._leading = False

    def execute(self, command: Command, context: Context) -> Outcome:
        """Run one command; raise its :class:`DomainError` if it is rejected."""
        outcome = self.execute_batch([command], context)[0]
        if outcome.problem is not None:
            raise outcome.problem
        return outcome

    def execute_batch(self, commands: Sequence[Command], context: Context) -> list[Outcome]:
        """Run commands in order in one store transaction; report each outcome.

        Batches submitted concurrently (request threads) are group-committed: the first caller
        to find no commit running leads, executing every batch queued so far in one store
        transaction, in arrival order, as if they ran one after the other; the others wait for
        their outcomes (or lead the next group if theirs did not fit).
        """
        mine = _Submitted([(command, context) for command in commands])
        with self._turn:
            self._queue.append(mine)
            while mine.outcomes is None and mine.error is None:
                if self._leading:
                    self._turn.wait()
                    continue
                self._leading = True
                group = self._take_group()
                self._turn.release()
                try:
                    self._run_group(group)
                finally:
                    self._turn.acquire()
                    self._leading = False
                    self._turn.notify_all()
        if mine.error is not None:
            raise mine.error
        assert mine.outcomes is not None
        return mine.outcomes

    def _take_group(self) -> list[_Submitted]:
        """Queued batches from the oldest, up to ``group_limit`` commands (at least one batch)."""
        taken, size = 0, 0
        for submitted in self._queue:
            if taken and size + len(submitted.items) > self.group_limit:
                break
            taken, size = taken + 1, size + len(submitted.items)
        group, self._queue = self._queue[:taken], self._queue[taken:]
        return group

    def _run_group(self, group: list[_Submitted]) -> None:
        try:
            outcomes = self._execute([item for submitted in group for item in submitted.items])
        except BaseException as error:
            for submitted in group:
                submitted.error = error
            raise
        start = 0
        for submitted in group:
            submitted.outcomes = outcomes[start : start + len(submitted.items)]
            start += len(submitted.items)

    def _execute(self, items: Sequence[tuple[Command, Context]]) -> list[Outcome]:
        commands = [command for command, _ in items]
        refused: dict[int, DomainError] = {}
        attempt = 0
        while attempt <= self.retries:
            self.cache.watch(self.store)  # erased elsewhere: out of the cache before any load
            uow = UnitOfWork(self.store, self.index_key, self.cache)
            uow.prefetch(_targets(uow, commands))
            uow.prefetch(_holders(uow, commands))  # customers named by external id: one query
            now = self.clock()
            envs: dict[int, Env] = {}  # one per context (a batch's commands share theirs)
            plans = [
                refused[index]
                if index in refused
                else self._plan(command, self._env(envs, uow, context, now))
                for index, (command, context) in enumerate(items)
            ]
            try:
                recordings = uow.commit()
            except IntegrityError:
                attempt += 1
                log.info("command.retry", attempt=attempt, commands=len(commands))
                continue
            except EventTooLarge as error:  # plan again without the command that made it
                refused[_culprit(plans, error)] = error
                log.info("command.event_too_large", **error.details)
                continue
            positions = {id(r.domain_event): r.notification.id for r in recordings}
            if recordings and self.on_commit is not None:
                self.on_commit(max(positions.values()))
            known = self.store.positions_of(_unrecorded(plans, positions))  # replays, no-ops
            outcomes = [self._outcome(plan, positions, known) for plan in plans]
            counted = Counter(
                (command.NAME, outcome.problem.code if outcome.problem else outcome.status)
                for command, outcome in zip(commands, outcomes, strict=True)
            )
            for labels, count in counted.items():  # one metric update per kind, not command
                COMMANDS.labels(*labels).inc(count)
            return outcomes
        problem = ConcurrentWrite(f"gave up after {self.retries + 1} conflicting attempts")
        return [Outcome("rejected", problem=problem) for _ in commands]

    def _env(self, envs: dict[int, Env], uow: UnitOfWork, context: Context, now: datetime) -> Env:
        """The handlers' environment for ``context`` (frozen, so shared by its commands)."""
        env = envs.get(id(context))
        if env is None:
            meta = Meta(context.actor, context.correlation_id, context.causation_id, now)
            env = envs[id(context)] = Env(
                uow, meta, self.default_region, self.business_time_floor, self.merge_part_size
            )
        return env

    def _plan(self, command: Command, env: Env) -> _Planned | DomainError:
        uow = env.uow
        savepoint = uow.savepoint()
        try:
            record_id, record = (None, None)
            if command.idempotency_key is not None:
                record_id, record = uow.idempotency_record(command.idempotency_key)
                if record is not None:
                    record.check(command.idempotency_key, command.digest())
                    refs = [(UUID(cid), int(v)) for cid, v in record.events]
                    customer_id = UUID(record.customer_id)
                    existing = isinstance(command, RegisterCustomer) and not refs
                    return _Planned(customer_id, record.outcome_version, [], refs, True, existing)
            customer_id = HANDLERS[type(command)](command, env)
            version = uow.customer(customer_id).version
            events = [e for e in uow.events_since(savepoint) if isinstance(e, CustomerEvent)]
            refs = [(e.originator_id, e.originator_version) for e in events]
            if record_id is not None:
                digest = command.digest()
                uow.add(IdempotencyRecord.record(record_id, digest, customer_id, version, refs))
        except DomainError as error:
            uow.rollback(savepoint)
            if isinstance(error, CustomerMerged):
                return _final_survivor(uow, error)
            return error
        existing = isinstance(command, RegisterCustomer) and not events
        return _Planned(customer_id, version, events, refs, existing=existing)

    def _outcome(
        self,
        plan: _Planned | DomainError,
        positions: dict[int, int],
        known: dict[tuple[UUID, int], int],
    ) -> Outcome:
        """``positions``: of the events just recorded (by ``id``); ``known``: of the refs of
        plans that recorded none (:func:`_unrecorded`)."""
        if isinstance(plan, DomainError):
            return Outcome("rejected", problem=plan)
        recorded = [positions[id(e)] for e in plan.events if id(e) in positions]
        looked_up = [] if recorded else [known.get(ref) for ref in _refs(plan)]
        found = [p for p in recorded + looked_up if p is not None]
        return Outcome(
            "accepted",
            customer_id=plan.customer_id,
            version=plan.version,
            position=max(found) if found else None,
            replayed=plan.replayed,
            events=tuple(e.TYPE for e in plan.events),
            existing=plan.existing,
        )


@dataclass
class _Submitted:
    """One caller's batch in the group-commit queue, and what became of it."""

    items: list[tuple[Command, Context]]
    outcomes: list[Outcome] | None = None
    error: BaseException | None = None


def _refs(plan: _Planned) -> list[tuple[UUID, int]]:
    """The (customer, version) pairs whose positions answer for ``plan``."""
    return plan.refs or [(plan.customer_id, plan.version)]


def _unrecorded(
    plans: Sequence[_Planned | DomainError], positions: dict[int, int]
) -> Iterator[tuple[UUID, int]]:
    """The refs of the accepted plans that recorded nothing (idempotent replays, no-ops): their
    positions are looked up together, one query per 500, not one per command."""
    for plan in plans:
        if isinstance(plan, _Planned) and not any(id(e) in positions for e in plan.events):
            yield from _refs(plan)


def _culprit(plans: Sequence[_Planned | DomainError], error: EventTooLarge) -> int:
    """Index of the plan that triggered the refused event."""
    for index, plan in enumerate(plans):
        if isinstance(plan, _Planned) and any(
            e.originator_id == error.customer_id and e.originator_version == error.version
            for e in plan.events
        ):
            return index
    raise error  # pragma: no cover - every pending customer event belongs to a plan


def _final_survivor(uow: UnitOfWork, error: CustomerMerged) -> CustomerMerged:
    """``error`` naming the last customer of the merge chain (A → B → C names C for A)."""
    try:
        survivor = uow.final_survivor(uow.customer(error.survivor_id))
    except DomainError:  # a link to nowhere (bad data): name what the customer names
        return error
    if survivor.id == error.survivor_id:
        return error
    return CustomerMerged(error.customer_id, survivor.id)


def _targets(uow: UnitOfWork, commands: Sequence[Command]) -> Iterator[UUID]:
    """Every stored aggregate the commands will read: customers, duplicates, the index rows
    of the external ids and emails they name, idempotency records."""
    for command in commands:
        if command.customer_id is not None:
            yield command.customer_id
        duplicate = getattr(command, "duplicate_id", None)
        if isinstance(duplicate, UUID):
            yield duplicate
        for system, external_id in _named_ids(command):
            yield uow.external_id(system, external_id)
        email = command.email if isinstance(command, RegisterCustomer) else None
        if isinstance(email, str) and text_problem(email, Text.LINE) is None:
            # the usual normalised form (a guess: a miss is loaded by the handler, as before);
            # text the policy refuses (an unpaired surrogate cannot even be hashed) is the
            # handler's to refuse, so it is not guessed at
            yield uow.email_id(email.strip().lower())
        if command.idempotency_key is not None:
            yield uow.idempotency_id(command.idempotency_key)


def _holders(uow: UnitOfWork, commands: Sequence[Command]) -> Iterator[UUID]:
    """The customers holding the external ids the commands name (their index rows are loaded
    by then), so addressing by ``customer_ref`` loads customers in bulk, not one by one."""
    for command in commands:
        for system, external_id in _named_ids(command):
            holder = uow.external_holder(system, external_id)
            if holder is not None:
                yield holder


def _named_ids(command: Command) -> list[tuple[str, str]]:
    """The external ids a command names, in canonical form (invalid ones are left to the
    handler, which refuses them)."""
    named = [(ref.system, ref.id)] if (ref := command.customer_ref) is not None else []
    if isinstance(command, RegisterCustomer) and isinstance(command.external_ids, dict):
        named += [(s, i) for s, i in command.external_ids.items() if i is not None]
    try:
        return [normalise_ref(system, external_id, "customer_ref") for system, external_id in named]
    except DomainError:
        return []
