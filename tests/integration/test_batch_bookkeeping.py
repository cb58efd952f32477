"""The framework's per-batch bookkeeping, on SQLite and PostgreSQL (issue 16, round 9).

- Every read model applies a batch under ONE savepoint; when one of them raises, all of it is
  undone and each read model applies the batch on its own, so only the failing one parks its
  customer, and the read models applied before it are not applied twice.
- A binding whose position is past the batch's envelopes has its versions left unread; the
  others still see exactly their own versions and parked customers.
- Count tables take a batch's changes in one statement (``Tx.upsert(added=…)``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence

import pytest

from consumers.embedded import EmbeddedRunner
from consumers.rebuild import rebuild_all
from consumers.store_feed import StoreFeed
from domain.events import EVENT_TYPES
from infra.envelope import Envelope
from infra.parking import Parked
from infra.read_tx import Tx
from infra.readstore import ReadStore, open_read_store
from infra.store import EventStore
from projections import framework
from projections.counts import add_counts
from projections.framework import (
    Binding,
    Known,
    Projector,
    bookkeeping,
    ensure_schema,
    park,
    positions,
    project,
    versions,
)
from projections.registry import all_projectors
from tests.integration.parking_support import RefusingProfiles, parked
from tests.published_support import generated_store


@pytest.fixture
def read_store(database_url: str) -> Iterator[ReadStore]:
    read_store = open_read_store(database_url)
    yield read_store
    read_store.close()


def test_a_failing_read_model_undoes_the_shared_savepoint_and_parks_its_customer_alone(
    store: EventStore, read_store: ReadStore
) -> None:
    """The refusing projector comes last: every other one has applied the batch under the
    shared savepoint when it raises. They must apply it again exactly once (equal to a
    rebuild: counts not doubled, history rows not repeated) and park nobody."""
    generated_store(store, seed=9)
    feed = StoreFeed(store)
    envelopes = feed.read(0, 100_000)
    buyers = Counter(e.customer_key for e in envelopes if e.type == "customer.purchase_recorded")
    refused = buyers.most_common(1)[0][0]
    others = all_projectors()[1:]
    refusing = RefusingProfiles({refused})
    ensure_schema(read_store, [*others, refusing])
    EmbeddedRunner(feed, read_store, [*others, refusing], batch_size=500).catch_up()

    assert [p.customer_id for p in parked(read_store, refusing)] == [refused]
    assert {p.name: parked(read_store, p) for p in others} == {p.name: [] for p in others}
    last = max(e.version for e in envelopes if e.customer_key == refused)
    with read_store.transaction() as tx:
        assert versions(tx, refusing, [refused]) == {}
        assert all(versions(tx, p, [refused])[refused] == last for p in others[:2])
    assert set(positions(read_store).values()) == {store.head()}
    results = rebuild_all(feed, read_store, others, verify_only=True)
    assert {r.name: r.differences for r in results} == {p.name: [] for p in others}


class Recording(Projector):
    """Owns no table; keeps what it was given (the test reads it back)."""

    tables = ()
    schema = ()

    def __init__(self, name: str) -> None:
        self.name = name  # type: ignore[misc]
        self.got: list[tuple[str, int]] = []

    def apply(self, tx: Tx, envelopes: Sequence[Envelope]) -> None:
        self.got += [(e.customer_key, e.version) for e in envelopes]


@pytest.mark.parametrize("ahead_at", ["head", "middle"])
def test_a_binding_past_the_batch_is_not_looked_up_and_the_others_stay_exact(
    ahead_at: str, store: EventStore, read_store: ReadStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``ahead`` has applied the whole batch, or its first half; ``behind`` is at 0 with
    versions and a parked customer of its own: it skips what it applied, keeps the parked
    customer waiting and parks a gap, whatever the other binding's position."""
    generated_store(store, seed=3)
    envelopes = [e for e in StoreFeed(store).read(0, 400) if e.type in EVENT_TYPES]
    middle = envelopes[len(envelopes) // 2].position
    runs: dict[str, list[Envelope]] = {}
    for envelope in envelopes:
        runs.setdefault(envelope.customer_key, []).append(envelope)
    done, waiting = [c for c, run in runs.items() if len(run) >= 3][:2]
    lost = next(
        e
        for e in envelopes
        if e.version == 2 and e.position < middle and e.customer_key not in {done, waiting}
    )
    fed = [e for e in envelopes if e is not lost]
    reached = fed[-1].position if ahead_at == "head" else middle
    ahead, behind = Recording("ahead"), Recording("behind")
    ensure_schema(read_store, [ahead, behind])
    ahead_seen = {e.customer_key: e.version for e in envelopes if e.position <= reached}
    with read_store.transaction() as tx:
        tx.execute("UPDATE projection_state SET position = ? WHERE name = 'ahead'", (reached,))
        for projector, seen in ((ahead, ahead_seen), (behind, {done: 2})):
            key, columns = ("customer_id",), ("customer_id", "version")
            tx.upsert(projector.versions_table, key, columns, sorted(seen.items()))
        park(tx, behind, [Parked(waiting, 1, runs[waiting][0].position, "held")])
        looked_up: list[list[str]] = []

        def spied(tx: Tx, bindings: Sequence[Binding], customers: Sequence[str]) -> list[Known]:
            looked_up.append([b.projector.name for b in bindings])
            return bookkeeping(tx, bindings, customers)

        monkeypatch.setattr(framework, "bookkeeping", spied)  # the real one, watched
        project(tx, [Binding.live(ahead), Binding.live(behind)], fed)

    assert looked_up == [["behind"] if ahead_at == "head" else ["ahead", "behind"]]

    assert ahead.got == [(e.customer_key, e.version) for e in fed if e.position > reached]
    gap = lost.customer_key
    assert behind.got == [
        (e.customer_key, e.version)
        for e in fed
        if not (e.customer_key == done and e.version <= 2)
        and e.customer_key != waiting
        and not (e.customer_key == gap and e.version > 2)
    ]
    found = [(p.customer_id, p.version) for p in parked(read_store, behind)]
    assert sorted(found) == sorted([(waiting, 1), (gap, 2)])
    assert positions(read_store) == {"ahead": fed[-1].position, "behind": fed[-1].position}


def test_counts_add_up_in_one_statement_and_rows_at_zero_go(read_store: ReadStore) -> None:
    with read_store.transaction() as tx:
        tx.execute(
            "CREATE TABLE counted (k TEXT NOT NULL, n BIGINT NOT NULL, c BIGINT NOT NULL, PRIMARY KEY (k, n))"
        )
        add_counts(tx, "counted", ("k", "n"), "c", {("a", 1): 2, ("b", 1): -1, ("c", 2): 0})
        add_counts(tx, "counted", ("k", "n"), "c", {("a", 1): -2, ("b", 1): 3, ("b", 2): 1})
        add_counts(tx, "counted", ("k", "n"), "c", {("b", 1): -2}, signed=True)
        add_counts(tx, "counted", ("k", "n"), "c", {("b", 2): 4, ("d", 9): -1}, signed=True)
        add_counts(tx, "counted", ("k", "n"), "c", {("d", 9): 1}, signed=True)  # up to zero
        assert sorted(tx.fetchall("SELECT k, n, c FROM counted")) == [("b", 2, 5)]
        tx.upsert(
            "counted", ("k", "n"), ("k", "n", "c"), [("e", 1, 3)], replace=False, added=("c",)
        )
        tx.upsert(
            "counted", ("k", "n"), ("k", "n", "c"), [("e", 1, 4)], replace=False, added=("c",)
        )
        assert tx.fetchall("SELECT c FROM counted WHERE k = 'e'") == [(7,)]
        with pytest.raises(ValueError, match="share a key"):
            tx.upsert(
                "counted", ("k", "n"), ("k", "n", "c"), [("e", 1, 1), ("e", 1, 2)], added=("c",)
            )
        for wrong in (("n",), ("x",)):  # a key column, a column not written
            with pytest.raises(ValueError, match="must be written, not key"):
                tx.upsert("counted", ("k", "n"), ("k", "n", "c"), [("e", 1, 1)], added=wrong)
        with pytest.raises(ValueError, match="NULL adds up to NULL"):
            tx.upsert("counted", ("k", "n"), ("k", "n", "c"), [("e", 1, None)], added=("c",))
        assert tx.fetchall("SELECT c FROM counted WHERE k = 'e'") == [(7,)]
