"""Right to erasure, proven: after erasing customers in full mode (PostgreSQL, broker, relay,
consumers and API as processes), none of their personal data is left anywhere we control —
raw SQL dumps of the event store and read models, every Kafka topic, the processes' logs and an
audit export — while analytics totals are unchanged."""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from kafka import KafkaConsumer, TopicPartition

from infra.local_services import find_pg_bindir
from tests.e2e.conftest import Server, Story, clientele, served

PEOPLE = 6
ERASED = range(0, PEOPLE, 2)  # every other one


@pytest.fixture(scope="module")
def full_server() -> Iterator[Server]:
    with served("full") as server:
        yield server


def personal_values(i: int) -> list[str]:
    return [
        f"Erin Quigley{i}",
        f"Erin Q{i} Renamed",
        f"erin.quigley{i}@example.org",
        f"+4915112345{i:03d}",
        f"{i} Secret Garden Lane",
        f"asked about private matter {i}",
        f"call back re: matter {i}",
        f"loved it, signed erin{i}",
    ]


def populate(story: Story) -> list[str]:
    ids = []
    for i in range(PEOPLE):
        values = personal_values(i)
        created = story.write(
            "POST",
            "/v1/customers",
            expect=201,
            json={
                "name": values[0],
                "email": values[2],
                "phone": values[3],
                "attributes": {"address": values[4]},
            },
        )
        cid = created["customer_id"]
        ids.append(cid)
        base = f"/v1/customers/{cid}"
        story.write("PATCH", base, json={"name": values[1]}, headers={"If-Match": '"1"'})
        story.write(
            "POST",
            f"{base}/contacts",
            json={
                "channel": "phone",
                "direction": "inbound",
                "subject": values[5],
                "summary": values[6],
            },
        )
        story.write(
            "POST", f"{base}/feedback", json={"nps": 6 + i % 5, "csat": 4, "comment": values[7]}
        )
        story.write(
            "POST",
            f"{base}/purchases",
            json={"order_id": f"o-{i}", "amount": f"{10 + i}.50", "currency": "EUR"},
        )
        story.write(
            "PUT", f"{base}/consents/email_marketing", json={"granted": True, "source": "web-form"}
        )
        assert story.read("/v1/customers", q=values[2])["items"][0]["customer_id"] == cid
    return ids


def analytics(story: Story) -> dict[str, object]:
    return {
        "satisfaction": story.read("/v1/analytics/satisfaction"),
        "churn": story.read("/v1/analytics/churn", period="year"),
    }


def database_dump(url: str) -> bytes:
    done = subprocess.run(
        [str(find_pg_bindir() / "pg_dump"), "--no-owner", f"--dbname={url}"],
        capture_output=True,
        timeout=120,
        check=True,
    )
    text = done.stdout
    # bytea columns (event state, wrapped keys) are dumped as hex: scan their bytes too.
    decoded = b"".join(bytes.fromhex(h.decode()) for h in re.findall(rb"\\\\x([0-9a-f]+)", text))
    return text + b"\n" + decoded


def topic_contents(bootstrap: str, prefix: str) -> tuple[bytes, int]:
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        consumer_timeout_ms=5000,
    )
    try:
        topics = sorted(t for t in consumer.topics() if t.startswith(prefix))
        consumer.assign(
            [TopicPartition(t, p) for t in topics for p in consumer.partitions_for_topic(t) or ()]
        )
        consumer.seek_to_beginning()
        chunks, records, deadline = [], 0, time.monotonic() + 60
        for record in consumer:
            parts = [record.key or b"", record.value or b"", *(v for _, v in record.headers)]
            chunks.extend(parts)
            records += 1
            if time.monotonic() > deadline:
                break
        return b"\n".join(chunks), records
    finally:
        consumer.close()


def test_erased_customers_leave_no_personal_data_anywhere(
    full_server: Server, tmp_path: Path
) -> None:
    story = Story(full_server)
    ids = populate(story)
    before = analytics(story)
    for i in ERASED:
        story.write("DELETE", f"/v1/customers/{ids[i]}", who="admin")
    for i in ERASED:
        assert story.read(f"/v1/customers/{ids[i]}", expect=410)["type"] == "/problems/gone-erased"
        story.read(f"/v1/customers/{ids[i]}/history", who="auditor")  # audit model caught up
    assert analytics(story) == before  # facts without personal data survive erasure
    # the erased email is free again
    reused = story.write(
        "POST",
        "/v1/customers",
        expect=201,
        json={"name": "New Owner", "email": personal_values(0)[2]},
    )
    assert reused["customer_id"] not in ids

    env = full_server.env
    clientele(env, "audit", "seal")
    export = tmp_path / "export.jsonl"
    clientele(env, "audit", "export", "--output", str(export))
    verified = subprocess.run(
        [
            "python3",
            "-I",
            "infra/tamper_evidence/offline_verify.py",
            str(export),
            "--seal-key",
            "clientele-dev-seal-key",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=Path(__file__).parents[2],
    )
    assert verified.returncode == 0 and verified.stdout.strip() == "OK", verified.stdout

    dump = database_dump(env["CLIENTELE_DATABASE_URL"])
    topics, records = topic_contents(
        env["CLIENTELE_KAFKA_BOOTSTRAP"], env["CLIENTELE_KAFKA_TOPIC_PREFIX"]
    )
    logs = b"".join(p.read_bytes() for p in full_server.log.parent.glob("*.log"))
    places = {
        "sql dump": dump,
        "kafka topics": topics,
        "logs": logs,
        "audit export": export.read_bytes(),
    }
    assert records > PEOPLE * 6 and len(logs) > 1000
    erased_values = [v for i in ERASED for v in personal_values(i) if v != personal_values(0)[2]]
    found = {
        (where, value)
        for where, content in places.items()
        for value in erased_values
        if value.encode() in content or value.lower().encode() in content.lower()
    }
    assert found == set()
    # the scan can see: live customers' personal data is in the read models (and only there)
    live = personal_values(1)
    assert live[1].encode() in dump and live[2].encode() in dump
    assert all(value.encode() not in topics + export.read_bytes() for value in live)
