"""The churn model through the real services, on SQLite and PostgreSQL: ``models fit`` on a
base simulated from BG/NBD records a versioned ``model.fitted`` event; the profile shows the
customer's ``churn_risk`` under that version; a segment on ``churn_risk.p_alive`` holds exactly
the customers whose P(alive) (recomputed in the test) is below its value; the lifecycle policy's
``at_risk.p_alive_below`` puts the long-silent frequent buyer at risk with the rule, the policy
version and the model version in their history; a second fit is version 2."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

from structlog.testing import capture_logs

from bootstrap import Services, build
from bootstrap.policy_processes import lifecycle_runner, model_fitter, policy_runner
from commands import messages as m
from commands.service import Context
from consumers.migrate import migrate
from consumers.rebuild import rebuild
from domain.btyd import Summary, p_alive
from domain.churn_model import MODEL_ID, summary_of
from infra.settings import Settings
from projections.segments import SegmentsProjector
from tests.api_support import Api, send
from tests.churn_support import simulate

DAY = timedelta(days=1)
NOW = datetime.now(UTC).replace(microsecond=0)
START = NOW - 700 * DAY
CLERK = Context(actor="clerk")
THRESHOLD = 0.3
POLICY = {
    "at_risk": {"gap_multiple": 20, "min_days": 250, "max_days": 400, "p_alive_below": THRESHOLD},
    "churned": {"gap_multiple": 40, "min_days": 500, "max_days": 800},
}


def register_with(services: Services, purchases: list[datetime]) -> UUID:
    outcome = services.commands.execute(m.RegisterCustomer(name="C", occurred_at=START), CLERK)
    assert outcome.customer_id is not None
    commands = [
        m.RecordPurchase(
            customer_id=outcome.customer_id,
            order_id=f"o-{i}",
            amount="15.00",
            currency="EUR",
            occurred_at=at,
        )
        for i, at in enumerate(purchases)
    ]
    for start in range(0, len(commands), 200):
        outcomes = services.commands.execute_batch(commands[start : start + 200], CLERK)
        assert [o.problem for o in outcomes if o.problem] == []
    return outcome.customer_id


def get(api: Api, path: str, who: str = "reader", position: int = 0) -> Any:
    response = api.client.get(path, headers=api.headers(who, **{"X-Min-Position": str(position)}))
    assert response.status_code == 200, response.text
    return response.json()


def test_fit_profile_segment_and_lifecycle_on_p_alive(api: Api) -> None:
    services: Services = api.app.state.services
    base: dict[UUID, list[datetime]] = {}
    for c in simulate(300, 0.8, 40.0, 0.6, 3.0, seed=5, days=(100, 650)):
        first = NOW - timedelta(days=c.T)
        bought = [first + timedelta(days=t) for t in c.purchases]
        base[register_with(services, bought)] = bought
    gone_days = [NOW - (400 - 4 * i) * DAY for i in range(8)]  # weekly-ish, silent for a year
    gone = register_with(services, gone_days)
    base[gone] = gone_days
    never = services.commands.execute(m.RegisterCustomer(name="N", occurred_at=START), CLERK)
    assert never.customer_id is not None
    rule = {"field": "churn_risk.p_alive", "op": "lt", "value": str(THRESHOLD)}
    defined = send(api, "PUT", "/v1/segments/likely-gone", {"name": "Likely gone", "rule": rule})
    assert defined.status_code in (200, 201), defined.text
    services.policies.define("lifecycle", POLICY, Context(actor="ops"), effective_at=START)
    assert services.runner is not None
    services.runner.catch_up()

    fitted = model_fitter(services).fit(NOW - DAY, 30, Context(actor="analyst"))
    view = fitted.view()
    assert (view["version"], view["customers"], view["horizon_days"]) == (1, len(base), 30)
    assert view["actor"] == "analyst"
    assert view["as_of"].startswith((NOW - DAY).date().isoformat())
    stored = services.store.backend.positioned(MODEL_ID, None)
    events = [(position, services.store.mapper.to_domain_event(s)) for position, s in stored]
    assert [(position, type(e).__name__) for position, e in events] == [
        (fitted.position, "FirstFitted")
    ]
    services.runner.catch_up()

    # the profile: churn_risk under version 1, P(alive) recomputed here from the purchases
    def expected(customer: UUID) -> float:
        s = summary_of(base[customer], max(NOW - DAY, *base[customer]))
        assert s is not None
        return p_alive(fitted.version.parameters, Summary(s.frequency, s.recency, s.T))

    profile = get(api, f"/v1/customers/{gone}", position=fitted.position)
    risk = profile["churn_risk"]
    assert (risk["model"], risk["model_version"], risk["horizon_days"]) == ("churn", 1, 30)
    assert risk["p_alive"] == f"{expected(gone):.6f}"
    assert float(risk["p_alive"]) < THRESHOLD
    assert float(risk["expected_purchases"]) >= 0
    assert get(api, f"/v1/customers/{never.customer_id}")["churn_risk"] is None

    # the segment: exactly the customers below the threshold
    members = get(api, "/v1/segments/likely-gone/members?limit=1000", position=fitted.position)
    found = {UUID(item["customer_id"]) for item in members["items"]}
    below = {c for c in base if round(expected(c), 6) < THRESHOLD}
    assert gone in found
    assert found == below

    # the lifecycle policy: at risk by P(alive), naming the rule and both versions
    report = lifecycle_runner(services).sweep(NOW)
    assert report.rejected == 0
    services.runner.catch_up()
    history = get(api, f"/v1/customers/{gone}/history?limit=1000", who="auditor")["items"]
    decided = [h for h in history if h["type"] == "customer.lifecycle_stage_changed"]
    reasons = [h["data"].get("reason") for h in decided]
    assert "policy lifecycle v1, rule at_risk_p_alive_below, model churn v1" in reasons
    assert get(api, f"/v1/customers/{gone}")["lifecycle_stage"] == "at_risk"

    second = model_fitter(services).fit(NOW, 90, Context(actor="analyst"))
    assert second.version.version == 2
    profile = get(api, f"/v1/customers/{gone}", position=second.position)
    assert (profile["churn_risk"]["model_version"], profile["churn_risk"]["horizon_days"]) == (
        2,
        90,
    )

    # the segments read model, fed the fits in log order, is the same rebuilt
    services.runner.catch_up()
    result = rebuild(services.feed, services.read_store, SegmentsProjector(), verify_only=True)
    assert result.differences == []


def test_the_policy_process_fits_the_model_on_its_schedule(
    database_url: str, tmp_path: Path
) -> None:
    settings = Settings(
        database_url=database_url, api_keys_file=tmp_path / "keys.json", model_fit_seconds=0.2
    )
    with build(settings) as services:
        migrate(services)
        for c in simulate(40, 0.8, 40.0, 0.6, 3.0, seed=9, days=(60, 300)):
            first = NOW - timedelta(days=c.T)
            register_with(services, [first + timedelta(days=t) for t in c.purchases])
        assert services.runner is not None
        services.runner.catch_up()
        with policy_runner(services) as process:
            assert "fitting the churn model every 0.2 s" in process.summary
            thread = threading.Thread(target=process.run, daemon=True)
            thread.start()
            try:
                deadline = time.monotonic() + 30
                while (found := services.models.latest()) is None or found.version < 2:
                    assert time.monotonic() < deadline, "no second periodic fit in 30 s"
                    time.sleep(0.05)
            finally:
                process.stop()
                thread.join(timeout=20)
    assert not thread.is_alive()
    assert (found.customers, found.horizon_days) == (40, 90)
    assert found.actor == "clientele:model-churn"


def test_the_periodic_fit_of_a_base_too_small_skips_with_a_warning(
    database_url: str, tmp_path: Path
) -> None:
    """A new install has no base to fit: the daily fit says so and waits for its next period
    (it raised, and the supervisor retried it every few seconds, re-reading the base)."""
    settings = Settings(database_url=database_url, api_keys_file=tmp_path / "keys.json")
    with build(settings) as services, capture_logs() as logs:
        migrate(services)
        register_with(services, [NOW - 3 * DAY])
        assert services.runner is not None
        services.runner.catch_up()
        assert model_fitter(services).fit_now() == 0
        assert services.models.latest() is None
    assert [e["event"] for e in logs if e["log_level"] == "warning"] == ["model.fit_skipped"]
