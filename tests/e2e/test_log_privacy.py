"""API keys and personal data never reach the logs (issue 17, item 5).

Real processes (``serve``; in full mode also ``relay``, ``consume`` and ``ingest``; the CLI) at
DEBUG, driven through registration, updates, contacts, feedback, pii reads, searches, a lookup
by external id, the batch route, validation errors that echo their input, conflicts,
authentication failures with wrong tokens, and in full mode commands on the command topic (one
rejected, one malformed). Then every line those processes logged is searched for each token,
each token's stored hash, and each personal value (as sent and in its stored form).
"""

from __future__ import annotations

import hashlib
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest
from kafka import KafkaProducer

from infra import kafka
from tests.e2e.conftest import CLIENTELE, Server, process, served
from tests.integration.kafka_support import read_topic

pytestmark = pytest.mark.e2e

NAME, NEW_NAME = "Zyxwvuta Quorbel", "Quorbelina Xantippe"
EMAIL, NEW_EMAIL = "zyx.quorbel@example.org", "quorbelina.new@example.org"
PHONE, PHONE_STORED = "030 9018 2077", "+493090182077"
CITY, SHOP_ID = "Quorbelstadt", "QX-88231"
SUBJECT, SUMMARY, COMMENT = "Quorbel subject", "Quorbel said hello", "Quorbel liked it"
INVALID = ["quorbel-not-an-email", "quorbel-phone-xx", "Quorbelbody"]
IMPORTED = ["Importina Quorbelsdottir", "importina@example.org", "quorbel-bad-email-import"]
INGESTED = ["Kafkina Quorbelova", "kafkina@example.org", "quorbel-bad-email-kafka", "QK-55310"]
PERSONAL = [NAME, NEW_NAME, EMAIL, NEW_EMAIL, PHONE, PHONE_STORED, CITY, SHOP_ID]
PERSONAL += [SUBJECT, SUMMARY, COMMENT, *INVALID, *IMPORTED, *INGESTED]
WRONG_TOKEN = "clt_0123456789ab_quorbelWrongTokenSecretPart0000000000000"
MALFORMED = "quorbel-malformed-credential"


@pytest.fixture(params=["embedded", "full"])
def debug_server(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Server]:
    monkeypatch.setenv("CLIENTELE_LOG_LEVEL", "DEBUG")
    with served(request.param) as server:
        yield server


def drive(server: Server) -> None:
    """Everything a client does that carries a key or personal data, errors included."""
    http = httpx.Client(base_url=server.base_url, timeout=30)
    admin, writer = server.headers("admin"), server.headers("writer")
    body = {
        "name": NAME,
        "email": EMAIL,
        "phone": PHONE,
        "attributes": {"city": CITY},
        "external_ids": {"shop": SHOP_ID},
    }
    created = http.post("/v1/customers", json=body, headers=writer)
    assert created.status_code == 201, created.text
    cid, position = created.json()["customer_id"], created.json()["position"]
    changed = http.patch(
        f"/v1/customers/{cid}",
        json={"name": NEW_NAME, "email": NEW_EMAIL},
        headers={**writer, "If-Match": '"1"'},
    )
    assert changed.status_code == 200, changed.text
    http.post(
        f"/v1/customers/{cid}/contacts",
        json={"channel": "email", "direction": "inbound", "subject": SUBJECT, "summary": SUMMARY},
        headers=writer,
    )
    last = http.post(
        f"/v1/customers/{cid}/feedback", json={"nps": 9, "comment": COMMENT}, headers=writer
    )
    position = max(position, last.json()["position"])
    reader = server.headers("reader", **{"X-Min-Position": str(position)})
    for path, params in [
        (f"/v1/customers/{cid}", {}),
        ("/v1/customers", {"q": NEW_EMAIL}),
        ("/v1/customers", {"q": NEW_NAME}),
        (f"/v1/customers/by-external/shop/{SHOP_ID}", {}),
    ]:
        for _ in range(60):  # full mode: the consumers may still be joining
            answer = http.get(path, params=params, headers=reader)
            if answer.status_code != 503:
                break
        assert answer.status_code == 200, (path, answer.text)
    http.get(f"/v1/customers/{cid}/history", headers=server.headers("auditor"))
    # errors that echo their input
    refused = [
        http.post("/v1/customers", json={"name": NAME, "email": INVALID[0]}, headers=writer),
        http.post("/v1/customers", json={"name": NAME, "phone": INVALID[1]}, headers=writer),
        http.post("/v1/customers", json={"name": [INVALID[2]]}, headers=writer),
        http.post(
            "/v1/customers",
            content=b'{"name": "' + INVALID[2].encode(),
            headers={**writer, "content-type": "application/json"},
        ),
        http.post("/v1/customers", json={"name": NAME, "email": NEW_EMAIL}, headers=writer),
        http.post(
            "/v1/commands:batch",
            json={"commands": [{"type": "register", "name": NAME, "email": INVALID[0]}]},
            headers=writer,
        ),
        http.get("/v1/customers", params={"q": EMAIL, "limit": INVALID[2]}, headers=reader),
    ]
    assert all(400 <= r.status_code < 500 or r.json()["results"] for r in refused)
    # authentication failures: unknown token, malformed header, right key for the wrong role
    assert (
        http.get("/v1/segments", headers={"Authorization": f"Bearer {WRONG_TOKEN}"}).status_code
        == 401
    )
    assert http.get("/v1/segments", headers={"Authorization": MALFORMED}).status_code == 401
    assert http.delete(f"/v1/customers/{cid}", headers=writer).status_code == 403
    assert http.get(f"/v1/customers/{cid}", headers=admin).status_code == 200


def run_cli(server: Server, folder: Path) -> str:
    """The CLI's logs (stderr) while importing personal data, a bad row among it."""
    rows = folder / "people.csv"
    rows.write_text(
        f"name,email\n{IMPORTED[0]},{IMPORTED[1]}\n{IMPORTED[0]},{IMPORTED[2]}\n", encoding="utf-8"
    )
    logs = ""
    for args in (["import", "customers", str(rows)], ["keys", "list"], ["projections", "status"]):
        done = subprocess.run(
            [CLIENTELE, *args],
            env=server.env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            cwd=folder,
        )
        logs += done.stderr
    return logs


def ingest_commands(server: Server) -> None:
    """Full mode: personal data through the command topic, a rejected and a malformed
    command among it (``ingest`` logs beside the others)."""
    topics = kafka.Topics(server.env["CLIENTELE_KAFKA_TOPIC_PREFIX"])
    bootstrap = server.env["CLIENTELE_KAFKA_BOOTSTRAP"]
    home = server.log.parent
    with process(server.env, home / "ingest.log", "ingest"):
        producer = KafkaProducer(bootstrap_servers=bootstrap)
        register = {"type": "register", "name": INGESTED[0], "email": INGESTED[1]}
        for value in (
            register | {"external_ids": {"shop": INGESTED[3]}, "idempotency_key": "k-1"},
            register | {"email": INGESTED[2], "idempotency_key": "k-2"},
        ):
            producer.send(topics.commands, key=b"k", value=orjson.dumps(value)).get(timeout=30)
        truncated = b'{"name": "' + INGESTED[0].encode()
        producer.send(topics.commands, key=b"junk", value=truncated).get(timeout=30)
        producer.close(timeout=10)
        results = read_topic(bootstrap, topics.command_results, 2, timeout=120)
        assert len(results) == 2, (home / "ingest.log").read_text()[-3000:]
        assert len(read_topic(bootstrap, topics.dlq(topics.commands), 1, timeout=60)) == 1


def secrets_of(server: Server) -> list[str]:
    tokens = [*server.tokens.values(), WRONG_TOKEN, MALFORMED]
    return tokens + [hashlib.sha256(token.encode()).hexdigest() for token in tokens]


def test_no_key_and_no_personal_value_is_ever_logged(debug_server: Server, tmp_path: Path) -> None:
    drive(debug_server)
    if debug_server.mode == "kafka":
        ingest_commands(debug_server)
    logs = run_cli(debug_server, tmp_path)
    for log in debug_server.log.parent.glob("*.log"):
        logs += log.read_text(encoding="utf-8", errors="replace")
    assert '"http.request"' in logs  # the access log was captured
    leaked = [
        value for value in [*secrets_of(debug_server), *PERSONAL] if value.lower() in logs.lower()
    ]
    context = [
        line[:400] for line in logs.splitlines() if any(v.lower() in line.lower() for v in leaked)
    ]
    assert not leaked, (leaked, context[:10])
