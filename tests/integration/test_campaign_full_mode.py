"""A campaign in full mode, processes started as a user would (PostgreSQL, the tansu broker):
``relay``, ``consume`` and ``ingest`` run; ``clientele campaigns launch`` waits for the
segments read model; a consent withdrawn after the launch stops that customer's message;
``clientele campaigns dispatch`` publishes to ``campaign.dispatch``, read here by a separate
consumer as a sending service would; outcomes come back on the command topic; the results
count them, the unsubscribe withdrew the consent and the hard bounce keeps the customer out of
the next launch, which the policy runner (``clientele policies run``) starts by itself at the
campaign's scheduled time."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import orjson
import pytest
from kafka import KafkaProducer

from commands import messages as m
from commands.campaigns import CampaignService
from commands.segments import SegmentService
from commands.service import CommandService, Context
from infra import kafka
from infra.local_services import KafkaBroker
from infra.readstore import open_read_store
from infra.store import EventStore
from projections import campaign_results
from projections.framework import ensure_schema
from projections.profiles import ProfilesProjector, get_profile
from projections.registry import all_projectors
from tests.integration.kafka_support import CLIENTELE, Proc, full_mode_env, read_topic
from tests.integration.parking_support import version_of

CTX = Context(actor="full-mode-test")
SPEC: dict[str, Any] = {
    "name": "Full mode",
    "purpose": "email_marketing",
    "channel": "email",
    "audience": {"segment": "everyone"},
    "control_fraction": "0.2",
    "content_ref": "cms:42",
}


def clientele(env: dict[str, str], *args: str) -> dict[str, Any]:
    done = subprocess.run(
        [CLIENTELE, *args], env=env, capture_output=True, timeout=180, check=False
    )
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    out = done.stdout.decode()
    result: dict[str, Any] = orjson.loads(out[out.index("{") :])
    return result


def until(check: Callable[[], bool], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.3)


@pytest.mark.integration
def test_launch_dispatch_outcomes_results(
    broker: KafkaBroker, postgres_url: str, tmp_path: Path
) -> None:
    prefix = f"c{uuid4().hex[:8]}."
    topics = kafka.Topics(prefix)
    kafka.ensure_topics(broker.bootstrap, topics.all(), partitions=12)
    env = full_mode_env(postgres_url, broker.bootstrap, prefix, CLIENTELE_CAMPAIGN_MAX_TOUCHES="5")
    store = EventStore(postgres_url)
    read_models = open_read_store(postgres_url)
    ensure_schema(read_models, all_projectors())
    service = CommandService(store, index_key="k")
    ids: list[UUID] = []
    for index in range(40):
        cid = service.execute(m.RegisterCustomer(name=f"C{index}"), CTX).customer_id
        assert cid is not None
        service.execute(m.SetConsent(customer_id=cid, purpose="email_marketing", granted=True), CTX)
        ids.append(cid)
    rule = {"field": "status", "op": "eq", "value": "active"}
    SegmentService(store).define("everyone", "Everyone", rule, None, CTX)
    campaigns = CampaignService(store)
    campaign, _ = campaigns.create(SPEC, CTX)
    processes = [
        Proc([name], env, tmp_path / f"{name}.log") for name in ("relay", "consume", "ingest")
    ]
    try:
        for process in processes:
            process.start()
        counts = clientele(env, "campaigns", "launch", str(campaign.id))
        assert counts["audience"] == 40 and counts["treatment"] + counts["control"] == 40
        treated = [c for c in ids if campaign.group_of(c) == "treatment"]
        withdrawn, bounced, unsubscribed, *others = treated
        service.execute(
            m.SetConsent(customer_id=withdrawn, purpose="email_marketing", granted=False), CTX
        )
        sent = clientele(env, "campaigns", "dispatch", str(campaign.id))
        assert sent == {"sent": len(treated) - 1, "skipped": {"no-consent": 1}}

        messages = read_topic(broker.bootstrap, topics.campaign_dispatch, len(treated) - 1)
        bodies = {UUID(r.key.decode()): orjson.loads(r.value) for r in messages}
        assert set(bodies) == set(treated) - {withdrawn}
        assert all(
            b["campaign_id"] == str(campaign.id) and b["channel"] == "email"
            for b in bodies.values()
        )
        assert all(b["content_ref"] == "cms:42" and "email" not in b for b in bodies.values())

        def outcome(customer: UUID, what: str, **extra: Any) -> bytes:
            doc = {"type": "campaign_outcome", "customer_id": str(customer)}
            return orjson.dumps({**doc, "campaign_id": str(campaign.id), "outcome": what, **extra})

        producer = KafkaProducer(bootstrap_servers=broker.bootstrap)
        replies = [outcome(c, "delivered") for c in bodies]
        replies += [outcome(c, "opened") for c in others[:3]]
        replies += [outcome(bounced, "bounced", hard=True), outcome(unsubscribed, "unsubscribed")]
        for reply in replies:
            producer.send(topics.commands, key=str(uuid4()).encode(), value=reply)
        producer.flush(30)
        producer.close()

        def counted() -> bool:
            with read_models.snapshot() as tx:
                report = campaign_results.report(tx, campaigns.get(campaign.id).view())
            members = {name: found["members"] for name, found in report["engagement"].items()}
            expected = {"delivered": len(bodies), "opened": 3, "unsubscribed": 1, "bounced": 1}
            return all(members[name] == count for name, count in expected.items())

        until(counted)
        # the unsubscribe's consent withdrawal is the customer's next event (the same command):
        # read the profile once the profiles read model applied it
        newest = store.customer(unsubscribed).version
        until(lambda: version_of(read_models, ProfilesProjector(), unsubscribed) >= newest)
        with read_models.snapshot() as tx:
            profile = get_profile(tx, unsubscribed)
        assert profile is not None and profile["consents"]["email_marketing"] is False

        # the second is scheduled: the policy runner's periodic task launches it, no one asks
        second, _ = campaigns.create({**SPEC, "name": "Again"}, CTX)
        campaigns.change(second.id, CTX, lambda c, meta: c.schedule(datetime.now(UTC), meta))
        schedule = {**env, "CLIENTELE_CAMPAIGN_SCHEDULE_SECONDS": "0.5"}
        processes.append(Proc(["policies", "run"], schedule, tmp_path / "policies.log"))
        processes[-1].start()
        until(lambda: campaigns.get(second.id).status == "launched", timeout=120)
        again = campaigns.get(second.id).outcome
        assert again is not None
        assert again["excluded"] == {"channel-invalid": 1, "no-consent": 2}
    finally:
        for process in processes:
            process.terminate()
        read_models.close()
        store.close()
