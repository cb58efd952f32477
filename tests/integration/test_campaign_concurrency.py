"""Two campaigns launched at the same time over the same audience on PostgreSQL never take a
customer over the frequency cap: each launch runs in its own services (its own connections and
command service, as two processes would), in small interleaving batches; the cap is decided on
the customer aggregate, whose version makes the later writer decide again."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest

from bootstrap.services import build
from commands import messages as m
from commands.service import Context
from consumers.embedded import catch_up_read_models
from infra.settings import Settings

CUSTOMERS = 300
CTX = Context(actor="concurrency-test")
SPEC: dict[str, Any] = {
    "purpose": "email_marketing",
    "channel": "email",
    "audience": {"segment": "everyone"},
    "control_fraction": "0.01",
}


@pytest.mark.integration
def test_concurrent_launches_never_exceed_the_cap(postgres_url: str, tmp_path: Path) -> None:
    settings = Settings(
        database_url=postgres_url, api_keys_file=tmp_path / "keys.json", campaign_max_touches=1
    )
    with build(settings) as services:
        ids: list[UUID] = []
        commands: list[m.Command] = []
        for index in range(CUSTOMERS):
            outcome = services.commands.execute(m.RegisterCustomer(name=f"C{index}"), CTX)
            assert outcome.customer_id is not None
            ids.append(outcome.customer_id)
            commands.append(
                m.SetConsent(
                    customer_id=outcome.customer_id, purpose="email_marketing", granted=True
                )
            )
        services.commands.execute_batch(commands, CTX)
        rule = {"field": "status", "op": "eq", "value": "active"}
        services.segments.define("everyone", "Everyone", rule, None, CTX)
        campaigns = [services.campaigns.create({**SPEC, "name": n}, CTX)[0].id for n in "AB"]
        catch_up_read_models(services)  # tables made and fed once, before the race

    start = threading.Barrier(2)
    counts: dict[UUID, dict[str, Any]] = {}
    failures: list[BaseException] = []

    def launch(campaign_id: UUID) -> None:
        try:
            with build(settings) as mine:
                launcher = mine.launcher
                launcher.batch_size = 20
                start.wait(timeout=30)
                counts[campaign_id] = launcher.launch(campaign_id, CTX)
        except BaseException as error:  # reported below
            failures.append(error)

    threads = [threading.Thread(target=launch, args=(c,)) for c in campaigns]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert not failures, failures
    with build(settings) as services:
        touches = [
            sum(
                1
                for t in services.store.customer(cid).campaigns.values()
                if t["group"] == "treatment"
            )
            for cid in ids
        ]
    assert max(touches) == 1  # the cap held for every customer
    treated = sum(c["treatment"] for c in counts.values())
    capped = sum(c["excluded"].get("frequency-capped", 0) for c in counts.values())
    assert treated == sum(touches) and treated <= CUSTOMERS
    assert capped > 0  # both launches met: the later writer was refused by the cap
    for found in counts.values():
        assert found["audience"] == CUSTOMERS
        assert found["treatment"] + found["control"] + sum(found["excluded"].values()) == CUSTOMERS
