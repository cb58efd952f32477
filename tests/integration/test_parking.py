"""No single event may stall a projection or orphan a customer (issue 13, item 1b).

On SQLite and PostgreSQL: a customer whose event a projector cannot apply is parked for
that projection only; everyone else flows; the customer's later events wait behind it; the
parked customer is visible (count, oldest, reason); re-driving from the event store after a
fix converges to exactly what a rebuild gives. The failures are real: a projector subclass
that refuses one customer, an event whose text PostgreSQL cannot store, a feed that lost an
event.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.http.app import create_app
from bootstrap import build
from commands.segments import SegmentService
from commands.service import CommandService
from consumers.embedded import EmbeddedRunner
from consumers.rebuild import rebuild
from consumers.redrive import redrive
from consumers.relay_tables import ensure_relay_tables, parking_lot
from consumers.store_feed import StoreFeed
from infra.api_keys import KeyStore, Role
from infra.parking import Parked
from infra.readstore import ReadStore
from infra.settings import Settings
from infra.store import EventStore
from projections.analytics import AnalyticsProjector
from projections.audit_history import AuditHistoryProjector
from projections.framework import Binding, Projector, park, positions, project
from projections.profiles import ProfilesProjector, get_profile
from projections.registry import all_projectors
from projections.segment_queries import changes
from projections.segments import SegmentsProjector
from tests.integration.parking_support import (
    CTX,
    NulSafeProfiles,
    RefusingProfiles,
    RefusingSegments,
    open_read_models,
    parked,
    register,
    register_with_nul,
    tag,
    version_of,
)


@pytest.fixture
def read_store(database_url: str) -> Iterator[ReadStore]:
    read_store = open_read_models(database_url)
    yield read_store
    read_store.close()


def held(read_store: ReadStore, projector: Projector) -> dict[str, tuple[int, str]]:
    return {p.customer_id: (p.version, p.reason) for p in parked(read_store, projector)}


def test_a_failing_customer_is_parked_and_everyone_else_flows(
    service: CommandService, store: EventStore, read_store: ReadStore
) -> None:
    ann, bob, cid = (register(service, n) for n in ("Ann", "Bob", "Cid"))
    refusing = RefusingProfiles({str(bob)})
    audit = AuditHistoryProjector()
    runner = EmbeddedRunner(StoreFeed(store), read_store, [refusing, audit], batch_size=2)
    runner.catch_up()  # before: the batch holding Bob raised, and every customer stalled

    assert held(read_store, refusing) == {
        str(bob): (1, f"ValueError: cannot project customer {bob}")
    }
    assert held(read_store, audit) == {}  # parked per projection: audit took Bob
    assert version_of(read_store, audit, bob) == 1
    with read_store.transaction() as tx:
        assert get_profile(tx, ann) is not None and get_profile(tx, cid) is not None
        assert get_profile(tx, bob) is None
    assert positions(read_store)["profiles"] == store.head()  # not stalled

    tag(service, bob, "later")  # waits behind Bob's parked event
    tag(service, ann, "vip")
    runner.catch_up()
    assert version_of(read_store, refusing, bob) == 0
    assert held(read_store, refusing)[str(bob)][0] == 1
    assert version_of(read_store, refusing, ann) == 2
    assert version_of(read_store, audit, bob) == 2

    still = redrive(StoreFeed(store), read_store, [refusing], due_only=False)
    assert [(r.customer_id, r.applied) for r in still] == [(str(bob), 0)]
    assert still[0].parked is not None and still[0].parked.attempts == 1

    refusing.refused.clear()  # the fix is deployed
    healed = redrive(StoreFeed(store), read_store, [refusing], due_only=False)
    assert [(r.customer_id, r.applied, r.parked) for r in healed] == [(str(bob), 2, None)]
    assert held(read_store, refusing) == {}
    with read_store.transaction() as tx:
        healed_profile = get_profile(tx, bob)
    assert healed_profile is not None and healed_profile["tags"] == ["later"]
    feed = StoreFeed(store)
    assert rebuild(feed, read_store, ProfilesProjector(), verify_only=True).differences == []


def test_the_runner_retries_parked_customers_with_backoff(
    service: CommandService, store: EventStore, read_store: ReadStore
) -> None:
    ann, bob = register(service, "Ann"), register(service, "Bob")
    refusing = RefusingProfiles({str(bob)})
    runner = EmbeddedRunner(
        StoreFeed(store), read_store, [refusing], poll_interval=0.05, redrive_interval=0.05
    )
    runner.start()
    try:
        deadline = time.monotonic() + 20
        while not held(read_store, refusing) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert str(bob) in held(read_store, refusing)

        def parked_row() -> Parked:
            with read_store.transaction(Binding.live(refusing).tables) as tx:
                (row,) = refusing.parking.listing(tx)
            return row

        # retried (and refused again) after 1 s, by the runner's thread; the next wait is 2 s
        deadline = time.monotonic() + 20
        while (row := parked_row()).attempts < 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert row.attempts >= 1
        assert datetime.fromisoformat(row.retry_at) > datetime.now(UTC)
        refusing.refused.clear()
        tag(service, bob, "back")
        runner.wake()
        deadline = time.monotonic() + 20
        while version_of(read_store, refusing, bob) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        runner.stop()
    assert version_of(read_store, refusing, bob) == 2 and held(read_store, refusing) == {}
    assert version_of(read_store, refusing, ann) == 1


def test_a_version_missing_from_the_feed_heals_from_the_store(
    service: CommandService, store: EventStore, read_store: ReadStore
) -> None:
    ann = register(service, "Ann")
    for value in ("a", "b", "c"):
        tag(service, ann, value)
    envelopes = StoreFeed(store).read(0, 100)
    assert [e.version for e in envelopes] == [1, 2, 3, 4]
    profiles = ProfilesProjector()
    with read_store.transaction() as tx:  # a feed that lost version 2 (e.g. a dead letter)
        project(tx, [Binding.live(profiles)], [envelopes[0], *envelopes[2:]], by_position=False)
    assert version_of(read_store, profiles, ann) == 1
    assert held(read_store, profiles) == {str(ann): (2, "version 2 missing from the feed (got 3)")}
    outcome = redrive(StoreFeed(store), read_store, [profiles])  # due at once? not yet: 1 s
    assert outcome == []
    outcome = redrive(StoreFeed(store), read_store, [profiles], customer_id=ann, due_only=False)
    assert [(o.applied, o.parked) for o in outcome] == [(3, None)]
    with read_store.transaction() as tx:
        healed = get_profile(tx, ann)
    assert healed is not None and healed["tags"] == ["a", "b", "c"] and healed["version"] == 4


def test_rebuild_and_verify_carry_parked_customers(
    service: CommandService, store: EventStore, read_store: ReadStore
) -> None:
    ann, bob = register(service, "Ann"), register(service, "Bob")
    refusing = RefusingProfiles({str(bob)})
    EmbeddedRunner(StoreFeed(store), read_store, [refusing]).catch_up()
    time.sleep(0.01)  # parked_at and retry_at differ between live and shadow: not compared
    assert rebuild(StoreFeed(store), read_store, refusing, verify_only=True).differences == []
    assert rebuild(StoreFeed(store), read_store, refusing).events == 2
    assert list(held(read_store, refusing)) == [str(bob)]  # the rebuild parked it too
    assert version_of(read_store, refusing, ann) == 1


def test_text_postgresql_cannot_store_parks_only_that_customer(
    database_url: str, service: CommandService, store: EventStore, read_store: ReadStore
) -> None:
    """The issue's NUL byte, written straight through the store (past any edge check)."""
    ann = register(service, "Ann")
    nul = register_with_nul(store)
    tag(service, nul, "after")
    projectors = all_projectors()
    EmbeddedRunner(StoreFeed(store), read_store, projectors).catch_up()
    profiles = projectors[0]
    found = {p.name: held(read_store, p) for p in projectors}
    if database_url.startswith("sqlite"):
        assert found == {p.name: {} for p in projectors}  # SQLite stores it
        return
    assert list(found["profiles"]) == [str(nul)]
    assert "NUL" in found["profiles"][str(nul)][1]
    assert all(found[p.name] == {} for p in projectors[1:])  # the others applied it
    assert version_of(read_store, AnalyticsProjector(), nul) == 2
    assert version_of(read_store, profiles, ann) == 1

    fixed = redrive(StoreFeed(store), read_store, [NulSafeProfiles()], due_only=False)
    assert [(o.applied, o.parked) for o in fixed] == [(2, None)]
    with read_store.transaction() as tx:
        shown = get_profile(tx, nul)
    assert shown is not None and shown["name"] == "NulByte" and shown["tags"] == ["after"]


def test_the_api_shows_parked_customers_and_never_waits_on_them(
    database_url: str, tmp_path: Path
) -> None:
    settings = Settings(database_url=database_url, api_keys_file=tmp_path / "keys.json")
    token = KeyStore(settings.api_keys_file).create("ops", [Role.ADMIN, Role.READER])[1]
    services = build(settings)
    refusing = RefusingProfiles({"Bob Refused"})
    services.projectors[0] = refusing
    services.runner = EmbeddedRunner(
        services.feed, services.read_store, services.projectors, redrive_interval=0.1
    )
    services.commands.on_commit = services.runner.wake
    auth = {"Authorization": f"Bearer {token}"}
    with TestClient(create_app(services)) as client:
        ann = client.post("/v1/customers", json={"name": "Ann"}, headers=auth).json()
        bob = client.post("/v1/customers", json={"name": "Bob Refused"}, headers=auth).json()
        waiting = {**auth, "X-Min-Position": str(bob["position"])}
        assert client.get(f"/v1/customers/{ann['customer_id']}", headers=waiting).status_code == 200
        behind = client.get(f"/v1/customers/{bob['customer_id']}", headers=waiting)
        assert behind.status_code == 503 and behind.headers["retry-after"] == "5"
        assert behind.json()["type"] == "/problems/customer-parked"
        assert behind.json()["held_by"] == "profiles" and behind.json()["version"] == 1
        status = client.get("/projections", headers=auth).json()
        profiles = next(p for p in status["projections"] if p["name"] == "profiles")
        assert profiles["parked"]["count"] == 1
        assert profiles["parked"]["oldest"]["customer_id"] == bob["customer_id"]
        assert "cannot project" in profiles["parked"]["oldest"]["reason"]
        public = client.get("/projections").json()["projections"][0]["parked"]  # no key
        assert public["count"] == 1 and public["oldest"]["age_seconds"] >= 0
        assert not {"customer_id", "reason"} & set(public["oldest"])
        assert all(p["parked"]["count"] == 0 for p in status["projections"][1:])
        metrics = client.get("/metrics").text
        assert 'clientele_projection_parked_customers{projection="profiles"} 1.0' in metrics
        assert 'clientele_projection_parked_customers{projection="audit"} 0.0' in metrics

        refusing.refused.clear()  # fixed: the runner's retry (backoff 1 s, 2 s, …) heals it
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            healed = client.get(f"/v1/customers/{bob['customer_id']}", headers=waiting)
            if healed.status_code == 200:
                break
            time.sleep(0.2)
        assert healed.status_code == 200 and healed.json()["name"] == "Bob Refused"
        status = client.get("/projections", headers=auth).json()
        assert all(p["parked"] == {"count": 0, "oldest": None} for p in status["projections"])


def test_a_redrive_that_cannot_read_the_store_backs_off_and_the_others_go_on(
    service: CommandService, store: EventStore, read_store: ReadStore
) -> None:
    ann = register(service, "Ann")
    profiles = ProfilesProjector()
    with read_store.transaction() as tx:  # a row no store read can serve (edited by hand)
        park(tx, profiles, [Parked("not-a-customer-id", 1, 1, "edited")])
        park(tx, profiles, [Parked(str(ann), 1, 1, "lost on the way")])
    outcomes = {o.customer_id: o for o in redrive(StoreFeed(store), read_store, [profiles])}
    assert outcomes == {}  # not due yet (1 s)
    outcomes = {
        o.customer_id: o for o in redrive(StoreFeed(store), read_store, [profiles], due_only=False)
    }
    broken = outcomes["not-a-customer-id"].parked
    assert broken is not None and broken.attempts == 1 and broken.reason.startswith("ValueError")
    assert (outcomes[str(ann)].applied, outcomes[str(ann)].parked) == (1, None)
    assert list(held(read_store, profiles)) == ["not-a-customer-id"]


def test_a_log_order_projection_redrives_by_deciding_again_from_the_log(
    service: CommandService, store: EventStore, read_store: ReadStore
) -> None:
    """Segments decide every customer at a definition, in log order. Bob, parked before the
    definition, must not enter at his own earlier event once re-driven (as if the definition
    had been in force then): the re-drive decides again from the log, as a rebuild does."""
    ann, bob = register(service, "Ann"), register(service, "Bob")
    for customer in (ann, bob):
        tag(service, customer, "vip")
    refusing = RefusingSegments({str(bob)})
    runner = EmbeddedRunner(StoreFeed(store), read_store, [refusing])
    runner.catch_up()
    vip = {"field": "tags", "op": "contains", "value": "vip"}
    defined = SegmentService(store).define("vips", "VIPs", vip, None, CTX).position
    tag(service, bob, "gold")  # waits behind Bob's parked registration
    runner.catch_up()
    assert held(read_store, refusing) == {
        str(bob): (1, f"ValueError: cannot project customer {bob}")
    }
    with read_store.transaction(Binding.live(refusing).tables) as tx:
        entered = [(c["customer_id"], c["position"]) for c in changes(tx)]
    assert entered == [(str(ann), defined)]  # the definition decided everyone but Bob

    still = redrive(StoreFeed(store), read_store, [refusing], due_only=False)
    assert [(o.customer_id, o.applied, o.parked is not None) for o in still] == [
        (str(bob), 0, True)
    ]
    assert still[0].parked is not None and still[0].parked.attempts == 1

    refusing.refused.clear()  # the fix is deployed
    healed = redrive(StoreFeed(store), read_store, [refusing], due_only=False)
    assert [(o.customer_id, o.applied, o.parked) for o in healed] == [(str(bob), 3, None)]
    assert held(read_store, refusing) == {}
    with read_store.transaction(Binding.live(refusing).tables) as tx:
        entered = sorted((c["customer_id"], c["position"]) for c in changes(tx))
    assert entered == sorted([(str(ann), defined), (str(bob), defined)])
    verified = rebuild(StoreFeed(store), read_store, SegmentsProjector(), verify_only=True)
    assert verified.differences == []


def test_a_segment_event_that_cannot_be_applied_parks_nobody(
    service: CommandService, store: EventStore, read_store: ReadStore
) -> None:
    """A definition concerns every customer: skipping it would silently change every
    membership, so the projection stops on it (and retries) instead of parking anyone."""
    ann = register(service, "Ann")
    segments = SegmentService(store)
    refusing = RefusingSegments({"Every one"})  # refuses the definition named so
    runner = EmbeddedRunner(StoreFeed(store), read_store, [refusing])
    runner.catch_up()
    everyone = {"field": "status", "op": "eq", "value": "active"}
    segments.define("all", "Every one", everyone, None, CTX)
    tag(service, ann, "vip")
    with pytest.raises(ValueError, match="cannot project"):
        runner.catch_up()
    assert held(read_store, refusing) == {}
    assert positions(read_store)["segments"] < store.head()
    refusing.refused.clear()
    runner.catch_up()
    assert positions(read_store)["segments"] == store.head()
    verified = rebuild(StoreFeed(store), read_store, SegmentsProjector(), verify_only=True)
    assert verified.differences == []


def test_a_park_never_moves_past_a_lower_version_held(read_store: ReadStore) -> None:
    """Relay and projections alike (one ParkingLot): parking a customer again at a higher
    version keeps the lower one (its event has not gone through yet); a lower or the same
    version replaces the row; only a release lets a re-drive move it forward."""
    ensure_relay_tables(read_store)
    lot = parking_lot()
    with read_store.transaction() as tx:
        lot.park(tx, [Parked("k", 5, 50, "refused at 5")])
        lot.park(tx, [Parked("k", 2, 20, "refused at 2")])
        lot.park(tx, [Parked("k", 7, 70, "refused at 7")])
        assert [(p.version, p.reason) for p in lot.listing(tx)] == [(2, "refused at 2")]
        lot.park(tx, [Parked("k", 2, 20, "again", attempts=1)])
        assert [(p.version, p.attempts) for p in lot.listing(tx)] == [(2, 1)]
        lot.release(tx, "k")
        lot.park(tx, [Parked("k", 7, 70, "past 2 now")])
        assert [p.version for p in lot.listing(tx)] == [7]
