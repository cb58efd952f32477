"""``clientele models``: fit (catching the embedded read models up, recording version after
version, errors naming the option), show; and the message when the models extra is missing."""

from __future__ import annotations

import builtins
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from typer.testing import CliRunner

from api.cli import app
from bootstrap import build
from commands import messages as m
from commands.service import Context
from tests.churn_support import simulate

runner = CliRunner()
NOW = datetime.now(UTC).replace(microsecond=0)


def base(n: int) -> None:
    ctx = Context(actor="test")
    with build() as services:
        for i, c in enumerate(simulate(n, 0.8, 40.0, 0.6, 3.0, seed=3, days=(60, 300))):
            first = NOW - timedelta(days=c.T)
            registered = m.RegisterCustomer(name=f"C{i}", occurred_at=first - timedelta(days=1))
            cid = services.commands.execute(registered, ctx).customer_id
            purchases = [
                m.RecordPurchase(
                    customer_id=cid,
                    order_id=f"o{k}",
                    amount="9.50",
                    currency="EUR",
                    occurred_at=first + timedelta(days=t),
                )
                for k, t in enumerate(c.purchases)
            ]
            services.commands.execute_batch(purchases, ctx)


def test_fit_records_versions_and_show_prints_them(database: str) -> None:
    base(60)
    first = runner.invoke(app, ["models", "fit", "--horizon-days", "30"])
    assert first.exit_code == 0, first.output
    fitted = json.loads(first.stdout)
    assert (fitted["version"], fitted["customers"], fitted["horizon_days"]) == (1, 60, 30)
    assert fitted["actor"] == "clientele:models-fit"
    assert set(fitted["parameters"]) == {"r", "alpha", "a", "b"}
    assert runner.invoke(app, ["models", "fit"]).exit_code == 0
    shown = runner.invoke(app, ["models", "show", "--version", "1"])
    assert json.loads(shown.stdout) == {k: v for k, v in fitted.items() if k != "position"}
    assert json.loads(runner.invoke(app, ["models", "show"]).stdout)["version"] == 2


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--horizon-days", "0"], "--horizon-days: must be a whole number of days, 1 to 3650"),
        (["--as-of", "2026-01-01T00:00:00"], "--as-of needs a time zone"),
        (["--as-of", "2999-01-01T00:00:00Z"], "--as-of: is in the future"),
    ],
)
def test_bad_options_are_named(database: str, args: list[str], message: str) -> None:
    result = runner.invoke(app, ["models", "fit", *args])
    assert result.exit_code == 2
    assert message in " ".join(result.output.split())


def test_a_base_too_small_and_no_fit_yet(database: str) -> None:
    base(3)
    result = runner.invoke(app, ["models", "fit"])
    assert result.exit_code == 2
    assert "a fit needs at least 10 customers" in " ".join(result.output.split())
    shown = runner.invoke(app, ["models", "show"])
    assert shown.exit_code == 2
    assert "never been fitted" in shown.output


def test_without_the_models_extra_the_fit_says_how_to_install_it(
    database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_import = builtins.__import__

    def without_scipy(name: str, *args: Any, **kwargs: Any) -> Any:
        if name.startswith("scipy") or (name == "domain" and "btyd_fit" in (args[2] or ())):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.delitem(__import__("sys").modules, "domain.btyd_fit", raising=False)
    monkeypatch.setattr(builtins, "__import__", without_scipy)
    result = runner.invoke(app, ["models", "fit"])
    assert result.exit_code == 2
    assert "pip install 'clientele[models]'" in " ".join(result.output.split())
