"""What a fault-injection run proved: drained, nothing lost or doubled, read models equal to a
rebuild, the membership topic complete, no consumer group stuck."""

from __future__ import annotations

import subprocess
import time
from collections import Counter
from typing import TYPE_CHECKING, Any

import orjson
from kafka import KafkaConsumer, TopicPartition

from bootstrap import build
from consumers.rebuild import rebuild
from consumers.status import pipeline_report
from infra.settings import Settings
from tests.e2e.faults import DRAIN_SECONDS
from tests.integration.kafka_support import CLIENTELE

if TYPE_CHECKING:
    from tests.e2e.faults import Harness


def verdict_of(harness: Harness) -> dict[str, Any]:
    """Drain, then count what was lost or doubled and compare read models to a rebuild."""
    settings = Settings(
        database_url=harness.postgres.url,
        kafka_bootstrap=harness.broker.bootstrap,
        kafka_topic_prefix=harness.load.prefix,
        api_keys_file=harness.home / "keys.json",
    )
    with build(settings) as services:
        drained = time.monotonic()
        while True:
            report = pipeline_report(services)
            lags = [report["relay"]["lag"], *(p["lag"] for p in report["projections"])]
            if not any(lags):
                break
            harness.check_deadline(drained + DRAIN_SECONDS, f"lag 0 (now {lags})")
            time.sleep(0.5)
        drain_seconds = time.monotonic() - drained
        markers: Counter[str] = Counter()
        for envelope in services.feed.read(0, 10**8):
            data = envelope.data
            for key in ("name", "tag", "order_id"):
                value = data.get(key)
                if isinstance(value, str) and value.startswith(
                    ("name-", "tag-", "order-", "kname-", "ktag-", "probe-", "kprobe-", "vip-")
                ):
                    markers[value] += 1
            if envelope.type == "customer.tagged" and data.get("tag") == "vip":
                markers[f"vip-{envelope.customer_id}"] += 1
        differences = {
            p.name: rebuild(services.feed, services.read_store, p, verify_only=True).differences
            for p in services.projectors
        }
        with services.read_store.transaction() as tx:
            recorded = {
                (str(r[0]), str(r[1]), str(r[2]), int(r[3]))
                for r in tx.fetchall(
                    "SELECT segment_id, customer_id, change, position FROM segment_changes"
                )
            }
    published = membership_topic(harness, len(recorded))
    status = stuck_groups(harness)
    with harness.load.ledger.lock:
        acknowledged = dict(harness.load.ledger.acknowledged)
    return {
        "acknowledged": len(acknowledged),
        "by_surface": Counter(harness.load.ledger.sent[m][0] for m in acknowledged),
        "lost": sorted(m for m in acknowledged if markers[m] == 0),
        "duplicated": sorted(m for m, n in markers.items() if n > 1),
        "unrebuilt": {k: v[:3] for k, v in differences.items() if v},
        "membership_missing": sorted(recorded - published)[:5],
        "membership_recorded": len(recorded),
        "stuck": status,
        "unrecovered": list(harness.unrecovered),
        "drain_seconds": drain_seconds,
    }


def membership_topic(harness: Harness, expect: int) -> set[tuple[str, str, str, int]]:
    published: set[tuple[str, str, str, int]] = set()
    reader = KafkaConsumer(bootstrap_servers=harness.broker.bootstrap, enable_auto_commit=False)
    try:
        topic = harness.load.topic("membership")
        numbers = reader.partitions_for_topic(topic) or set()
        partitions = [TopicPartition(topic, p) for p in sorted(numbers)]
        reader.assign(partitions)
        reader.seek_to_beginning(*partitions)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            batch = reader.poll(timeout_ms=1000)
            for records in batch.values():
                for r in records:
                    d = orjson.loads(r.value)
                    published.add(
                        (d["segment_id"], d["customer_id"], d["change"], int(d["position"]))
                    )
            if len(published) >= expect and not batch:
                break
    finally:
        reader.close()
    return published


def stuck_groups(harness: Harness) -> list[str]:
    """Consumer groups ``clientele consumers status`` calls stuck (empty: none)."""
    done = subprocess.run(
        [CLIENTELE, "consumers", "status", "--json"],
        env=harness.env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    groups = orjson.loads(done.stdout)["groups"]
    return [g["group"] for g in groups if g["stuck"]]


def failures(verdict: dict[str, Any]) -> list[str]:
    """What the verdict says went wrong (empty: nothing)."""
    checks = {
        "lost": verdict["lost"],
        "duplicated": verdict["duplicated"],
        "read models differ from a rebuild": verdict["unrebuilt"],
        "membership changes missing from the topic": verdict["membership_missing"],
        "stuck consumer groups": verdict["stuck"],
        "injections not recovered from without a restart": verdict["unrecovered"],
    }
    return [f"{what}: {found}" for what, found in checks.items() if found]
