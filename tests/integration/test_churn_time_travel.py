"""``churn_risk`` in time travel (issue 18), on SQLite and PostgreSQL: ``GET
/v1/customers/{id}?as_of=T`` and ``clientele replay --as-of T`` show the churn risk as of T,
from the customer's purchases up to T under the churn model version in force at T (the newest
fitted as of T; with ``known_at``, among the versions recorded by then).

The expected values are computed here independently: the customer's ``(x, t_x, T)`` counted by
hand from the purchase days, P(alive) by the BG/NBD closed form written out below (Fader, Hardie
and Lee 2005, eq. 11) and also by the domain's formulas (:mod:`domain.btyd`).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from typer.testing import CliRunner

from api.cli import app
from bootstrap import Services
from commands import messages as m
from commands.models import ModelService
from commands.service import Context
from domain.btyd import Fit, Parameters, Summary, expected_purchases, p_alive
from domain.churn_model import ChurnModel
from infra.settings import get_settings
from infra.store import EventStore
from tests.api_support import Api

DAY = timedelta(days=1)
START = datetime(2024, 1, 1, 12, tzinfo=UTC)
BOUGHT = (0, 10, 30, 31, 75)  # purchase days after START (noon)
FIRST = Parameters(r=0.8, alpha=40.0, a=0.6, b=3.0)  # fitted as of day 40, horizon 30 days
SECOND = Parameters(r=1.4, alpha=25.0, a=0.3, b=2.0)  # fitted as of day 90, horizon 90 days
ANALYST = Context(actor="analyst")


def closed_form_p_alive(p: Parameters, x: int, t_x: float, t: float) -> float:
    """BG/NBD P(alive | x, t_x, T), eq. (11) of Fader, Hardie and Lee (2005)."""
    if x == 0:
        return 1.0
    odds: float = (p.a / (p.b + x - 1)) * ((p.alpha + t) / (p.alpha + t_x)) ** (p.r + x)
    return 1.0 / (1.0 + odds)


def expected(day: int, p: Parameters, horizon: int) -> dict[str, Any]:
    """The churn risk as of noon on ``day``: (x, t_x, T) counted from the purchase days."""
    days = [d for d in BOUGHT if d <= day]
    x, t_x, t = len(days) - 1, days[-1] - days[0], day - days[0]
    found = closed_form_p_alive(p, x, t_x, t)
    assert abs(found - p_alive(p, Summary(x, t_x, t))) < 1e-12
    return {
        "p_alive": f"{found:.6f}",
        "expected_purchases": f"{expected_purchases(p, Summary(x, t_x, t), horizon):.6f}",
        "frequency": x,
        "recency": t_x,
        "T": t,
        "horizon_days": horizon,
    }


def at_day(day: int) -> datetime:
    return START + day * DAY


def at(day: int) -> str:
    return at_day(day).isoformat()


def travel(api: Api, customer: UUID, **query: str) -> Any:
    response = api.client.get(
        f"/v1/customers/{customer}", params=query, headers=api.headers("reader")
    )
    assert response.status_code == 200, response.text
    return response.json()["churn_risk"]


def ava(services: Services) -> UUID:
    """A customer registered at START who bought on the days of BOUGHT."""
    outcome = services.commands.execute(m.RegisterCustomer(name="Ava", occurred_at=START), ANALYST)
    customer = outcome.customer_id
    assert customer is not None
    purchases: list[m.Command] = [
        m.RecordPurchase(
            customer_id=customer,
            order_id=f"o{d}",
            amount="12.00",
            currency="EUR",
            occurred_at=START + d * DAY,
        )
        for d in BOUGHT
    ]
    assert [o.problem for o in services.commands.execute_batch(purchases, ANALYST)] == [None] * 5
    return customer


def test_churn_risk_as_of_a_business_time_under_the_model_in_force_then(
    api: Api, database_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    services: Services = api.app.state.services
    customer = ava(services)
    models = services.models
    models.record(Fit(FIRST, -1.0, 100), horizon_days=30, as_of=START + 40 * DAY, context=ANALYST)
    between = datetime.now(UTC)
    time.sleep(0.01)
    models.record(Fit(SECOND, -1.0, 100), horizon_days=90, as_of=START + 90 * DAY, context=ANALYST)

    assert travel(api, customer, as_of=at(39)) is None  # no version fitted by then
    for day, params, version, horizon in (
        (40, FIRST, 1, 30),
        (60, FIRST, 1, 30),  # before the purchase of day 75: it does not count yet
        (89, FIRST, 1, 30),
        (90, SECOND, 2, 90),
        (400, SECOND, 2, 90),
    ):
        risk = travel(api, customer, as_of=at(day))
        assert risk == {
            "model": "churn",
            "model_version": version,
            "as_of": (START + day * DAY).strftime("%Y-%m-%dT%H:%M:%S.000000+00:00"),
            **expected(day, params, horizon),
        }, day
        assert travel(api, customer, as_of=at(day)) == risk  # a pure function of the log and T
    # what was known before the second fit was recorded: the first version, even at day 400
    known = travel(api, customer, as_of=at(400), known_at=between.isoformat())
    assert (known["model_version"], known["p_alive"]) == (1, expected(400, FIRST, 30)["p_alive"])

    # the same view from the command line
    monkeypatch.setenv("CLIENTELE_DATABASE_URL", database_url)
    monkeypatch.setenv("CLIENTELE_API_KEYS_FILE", str(tmp_path / "keys.json"))
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(app, ["replay", str(customer), "--as-of", at(60)])
        early = CliRunner().invoke(app, ["replay", str(customer), "--as-of", at(39)])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 0, result.output
    line = " ".join(result.output.split())  # the table may wrap
    shown = expected(60, FIRST, 30)
    assert f"(model churn v1): p_alive {shown['p_alive']}" in line
    assert f"expected purchases in 30 days {shown['expected_purchases']}" in line
    assert "none (no fit in force, or no purchase)" in " ".join(early.output.split())


def test_time_travel_keeps_the_model_and_sees_a_fit_recorded_elsewhere_at_once(
    api: Api, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Time travel reads the churn model from the store once, not per request
    (:meth:`ModelService.as_seen`), and no clock decides when it is read again: a fit recorded
    by another process is in the very next answer (the look at the log every time travel
    takes first passes it), and writes that are no fit leave the kept model in use."""
    services: Services = api.app.state.services
    customer = ava(services)
    reads: list[int] = []
    get = services.models.get

    def counted() -> ChurnModel | None:
        reads.append(1)
        return get()

    monkeypatch.setattr(services.models, "get", counted)
    assert travel(api, customer, as_of=at(60)) is None  # never fitted
    assert travel(api, customer, as_of=at(60)) is None
    assert len(reads) == 1

    elsewhere = EventStore(database_url)  # another process: its own store on the database
    try:
        fitting = ModelService(elsewhere)
        fitting.record(Fit(FIRST, -1.0, 100), horizon_days=30, as_of=at_day(40), context=ANALYST)
        first = travel(api, customer, as_of=at(60))
        assert (first["model_version"], first["p_alive"]) == (1, expected(60, FIRST, 30)["p_alive"])
        services.commands.execute(m.TagCustomer(customer_id=customer, tag="vip"), ANALYST)
        assert travel(api, customer, as_of=at(60)) == first
        assert len(reads) == 2

        fitting.record(Fit(SECOND, -1.0, 100), horizon_days=90, as_of=at_day(90), context=ANALYST)
        second = travel(api, customer, as_of=at(400))
        assert (second["model_version"], second["p_alive"]) == (
            2,
            expected(400, SECOND, 90)["p_alive"],
        )
        assert len(reads) == 3
    finally:
        elsewhere.close()
