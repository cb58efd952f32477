"""Audit export: the store's customer events, as published and as stored, with hashes and seals.

JSONL, one object per line, ``record`` telling which:

* ``export`` (first line): format, range, generation time and how hashes are computed;
* ``event``: the ``envelope`` exactly as on Kafka (personal data sealed, ``prev_hash``/``hash``)
  and the ``stored`` form the hash covers (aggregate id, version, topic, base64 state bytes);
* ``seal``: every seal (HMAC-SHA256 over the chain heads; verifiable with the seal key).

A third party verifies a file with :mod:`.offline_verify` (standard library only; see README,
"Verifying an audit export offline"), without access to our systems. Personal data is
only ever present as ciphertext, so exports of erased customers hold none that can be read.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import orjson

from domain.events import CustomerEvent
from infra.envelope import Envelope
from infra.feed_queries import in_log_order
from infra.readstore import ReadStore
from infra.store import EventStore
from infra.tamper_evidence.chain import DOMAIN_TAG, GENESIS
from infra.tamper_evidence.seals import stored_seals

FORMAT = "clientele.audit-export.v1"


def _header(start: datetime | None, end: datetime | None) -> dict[str, Any]:
    return {
        "record": "export",
        "format": FORMAT,
        "from": start.isoformat() if start else None,
        "to": end.isoformat() if end else None,
        "generated_at": datetime.now(UTC).isoformat(),
        "hash": {
            "algorithm": "sha256",
            "input": "domain_tag ‖ aggregate id (16 bytes) ‖ version (8 bytes, big-endian) ‖ "
            "topic ‖ 0x00 ‖ state bytes ‖ prev_hash (hex, ASCII)",
            "domain_tag": DOMAIN_TAG.decode(),
            "genesis": GENESIS,
        },
        "seal": {
            "algorithm": "HMAC-SHA256",
            "input": "clientele.seal.v1 ‖ 0x00 ‖ sealed_at ‖ 0x00 ‖ heads",
        },
    }


def _in_range(moment: datetime, start: datetime | None, end: datetime | None) -> bool:
    return (start is None or moment >= start) and (end is None or moment < end)


def export_lines(
    store: EventStore,
    seals: ReadStore,
    start: datetime | None = None,
    end: datetime | None = None,
    batch: int = 1000,
) -> Iterator[bytes]:
    """JSONL lines of the export for events recorded in ``[start, end)``, then the seals."""
    yield orjson.dumps(_header(start, end)) + b"\n"
    after = 0
    while linked := in_log_order(store, after, batch):
        after = linked[-1][0].id
        for notification, chain in linked:
            event = store.personal_mapper.to_sealed_event(notification)
            assert isinstance(event, CustomerEvent)
            if not _in_range(event.timestamp, start, end):
                continue
            envelope = Envelope.from_event(event, notification.id, chain)
            yield (
                orjson.dumps(
                    {
                        "record": "event",
                        "envelope": envelope.to_dict(),
                        "stored": {
                            "originator_id": str(notification.originator_id),
                            "version": notification.originator_version,
                            "topic": notification.topic,
                            "state": base64.b64encode(notification.state).decode(),
                        },
                    }
                )
                + b"\n"
            )
    with seals.transaction() as tx:
        rows = stored_seals(tx)
    for seq, sealed_at, heads, mac in rows:
        yield (
            orjson.dumps(
                {
                    "record": "seal",
                    "seq": int(seq),
                    "sealed_at": sealed_at,
                    "heads": heads,
                    "mac": mac,
                }
            )
            + b"\n"
        )
