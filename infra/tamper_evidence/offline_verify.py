#!/usr/bin/env python3
"""Verify a clientele audit export offline — Python 3 standard library only, no clientele.

    python3 offline_verify.py EXPORT.jsonl [--seal-key KEY]

Checks, for every ``event`` line:
  1. hash = SHA-256(domain tag ‖ aggregate id (16 bytes) ‖ version (8 bytes big-endian) ‖
     topic ‖ 0x00 ‖ stored state bytes ‖ prev_hash), and it equals the envelope's ``hash``;
  2. per customer, each version's ``prev_hash`` is the previous version's hash (the first
     exported version of a customer anchors its chain, reported when it is not version 1);
  3. the envelope says what the stored bytes say (ids, version, actor, correlation, causation,
     every clear data field, and the sealed personal data token);
and for every ``seal`` line (with ``--seal-key``): the HMAC matches, and every sealed chain
head that falls inside the export equals the exported hash of that customer and version.
Exit status 0 and ``OK`` when everything holds; 1 and one line per problem otherwise.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import json
import sys
import uuid
from typing import Any


def _untag(value: Any) -> Any:
    """Stored state tags decimals and datetimes; envelopes carry them as strings."""
    if isinstance(value, dict):
        if set(value) == {"_type_", "_data_"}:
            return str(value["_data_"])
        return {key: _untag(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_untag(item) for item in value]
    return value


def event_hash(tag: str, stored: dict[str, Any], previous: str) -> str:
    digest = hashlib.sha256(tag.encode())
    digest.update(uuid.UUID(stored["originator_id"]).bytes)
    digest.update(int(stored["version"]).to_bytes(8, "big"))
    digest.update(stored["topic"].encode() + b"\x00")
    digest.update(base64.b64decode(stored["state"]))
    digest.update(previous.encode())
    return digest.hexdigest()


def _consistency(envelope: dict[str, Any], stored: dict[str, Any]) -> list[str]:
    state = json.loads(base64.b64decode(stored["state"]))
    checks = {
        "customer_id": (str(uuid.UUID(envelope["customer_id"])), stored["originator_id"]),
        "version": (envelope["version"], stored["version"]),
        "actor": (envelope["actor"], state.get("actor")),
        "correlation_id": (envelope["correlation_id"], state.get("correlation_id")),
        "causation_id": (envelope["causation_id"], state.get("causation_id")),
        "sealed": (envelope.get("sealed"), state.get("_sealed")),
    }
    for field, value in envelope["data"].items():
        checks[f"data.{field}"] = (value, _untag(state.get(field)))
    return [name for name, (said, stored_value) in checks.items() if said != stored_value]


def verify(lines: list[str], seal_key: bytes | None) -> list[str]:
    """Every problem found in an export (empty when it verifies)."""
    problems: list[str] = []
    records = [json.loads(line) for line in lines if line.strip()]
    if not records or records[0].get("record") != "export":
        return ["not a clientele audit export (first line must be the export header)"]
    tag = records[0]["hash"]["domain_tag"]
    genesis = records[0]["hash"]["genesis"]
    hashes: dict[tuple[str, int], str] = {}
    last: dict[str, tuple[int, str]] = {}
    for record in records[1:]:
        if record["record"] != "event":
            continue
        envelope, stored = record["envelope"], record["stored"]
        where = f"{stored['originator_id']} version {stored['version']}"
        customer, version, previous = (
            stored["originator_id"],
            int(stored["version"]),
            envelope["prev_hash"],
        )
        if event_hash(tag, stored, previous) != envelope["hash"]:
            problems.append(f"{where}: stored bytes do not match their hash")
        if customer in last:
            known_version, known_hash = last[customer]
            if version != known_version + 1 or previous != known_hash:
                problems.append(f"{where}: does not follow version {known_version}")
        elif version == 1 and previous != genesis:
            problems.append(f"{where}: first version does not start from the genesis hash")
        mismatched = _consistency(envelope, stored)
        if mismatched:
            problems.append(
                f"{where}: envelope differs from stored event in {', '.join(mismatched)}"
            )
        last[customer] = (version, envelope["hash"])
        hashes[(uuid.UUID(customer).hex, version)] = envelope["hash"]
    for record in records[1:]:
        if record["record"] != "seal" or seal_key is None:
            continue
        message = (
            b"clientele.seal.v1\x00"
            + record["sealed_at"].encode()
            + b"\x00"
            + record["heads"].encode()
        )
        if not hmac.compare_digest(
            hmac.new(seal_key, message, hashlib.sha256).hexdigest(), record["mac"]
        ):
            problems.append(f"seal {record['seq']}: signature does not match its content")
            continue
        for aggregate, (version, digest) in json.loads(record["heads"]).items():
            exported = hashes.get((aggregate, int(version)))
            if exported is not None and exported != digest:
                problems.append(
                    f"seal {record['seq']}: {aggregate} version {version} differs from the export"
                )
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("export", help="the JSONL file from `clientele audit export`")
    parser.add_argument("--seal-key", help="the CLIENTELE_SEAL_KEY, to check the seals")
    args = parser.parse_args()
    with open(args.export, encoding="utf-8") as handle:
        problems = verify(handle.readlines(), args.seal_key.encode() if args.seal_key else None)
    for problem in problems:
        print(problem)
    if not problems:
        print("OK")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
