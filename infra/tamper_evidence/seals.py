"""Tamper evidence: signed seals of the chain heads, and verification of chains and seals.

* :func:`verify` recomputes every link (``infra.tamper_evidence.chain``) from the stored bytes and reports
  exactly which aggregate/version is edited, reordered or missing;
* :func:`seal` signs (HMAC-SHA256, configured key) the head of every chain, so deleting the
  newest events of a customer — which leaves a shorter but self-consistent chain — is caught,
  and so is any change to a seal.
"""

from __future__ import annotations

import hashlib
import hmac
from collections import defaultdict
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import orjson

from infra.read_tx import Tx
from infra.readstore import ReadStore
from infra.tamper_evidence.chain import GENESIS, link

SEALS_DDL = (
    "CREATE TABLE IF NOT EXISTS audit_seals (seq BIGINT PRIMARY KEY, sealed_at TEXT NOT NULL, "
    "heads TEXT NOT NULL, mac TEXT NOT NULL)"
)


def _hex(value: Any) -> str:
    return value.hex if isinstance(value, UUID) else str(value).replace("-", "")


def _mac(key: bytes, sealed_at: str, heads: str) -> str:
    return hmac.new(
        key,
        b"clientele.seal.v1\x00" + sealed_at.encode() + b"\x00" + heads.encode(),
        hashlib.sha256,
    ).hexdigest()


def _name(aggregate: str) -> str:
    return str(UUID(hex=aggregate)) if len(aggregate) == 32 else aggregate


def _events(tx: Tx, table: str, aggregate: str | None) -> dict[str, list[tuple[int, str, bytes]]]:
    where, params = (
        ("", []) if aggregate is None else (" WHERE originator_id = ?", [_param(tx, aggregate)])
    )
    rows = tx.fetchall(
        f"SELECT originator_id, originator_version, topic, state FROM {table}{where} "
        "ORDER BY originator_id, originator_version",
        params,
    )
    grouped: dict[str, list[tuple[int, str, bytes]]] = defaultdict(list)
    for originator, version, topic, state in rows:
        grouped[_hex(originator)].append((int(version), topic, bytes(state)))
    return grouped


def _param(tx: Tx, aggregate: str) -> Any:
    return UUID(hex=aggregate) if tx.dialect == "postgres" else aggregate


def _links(tx: Tx, aggregate: str | None) -> dict[str, dict[int, tuple[str, str]]]:
    where, params = ("", []) if aggregate is None else (" WHERE originator_id = ?", [aggregate])
    rows = tx.fetchall(
        f"SELECT originator_id, originator_version, prev_hash, hash FROM event_hashes{where}",
        params,
    )
    grouped: dict[str, dict[int, tuple[str, str]]] = defaultdict(dict)
    for originator, version, previous, digest in rows:
        grouped[originator][int(version)] = (previous, digest)
    return grouped


def _chain_problems(
    events: dict[str, list[tuple[int, str, bytes]]], links: dict[str, dict[int, tuple[str, str]]]
) -> list[str]:
    problems = []
    for aggregate in sorted(set(events) | set(links)):
        expected, chain_links = GENESIS, links.get(aggregate, {})
        stored = {version: (topic, state) for version, topic, state in events.get(aggregate, [])}
        for version in sorted(set(stored) | set(chain_links)):
            where = f"{_name(aggregate)} version {version}"
            if version not in stored:
                problems.append(f"{where}: event missing (its hash link remains)")
                break
            if version not in chain_links:
                problems.append(f"{where}: no hash link (inserted outside the store?)")
                break
            previous, digest = chain_links[version]
            topic, state = stored[version]
            if previous != expected:
                problems.append(
                    f"{where}: does not follow version {version - 1} (removed or reordered)"
                )
                break
            if link(previous, UUID(hex=aggregate), version, topic, state) != digest:
                problems.append(
                    f"{where}: stored bytes differ from their hash (edited or reordered)"
                )
                break
            expected = digest
    return problems


def stored_seals(tx: Tx) -> list[tuple[Any, ...]]:
    """Every seal (seq, sealed_at, heads, mac) in order; creates ``audit_seals`` if missing."""
    tx.raw(SEALS_DDL)
    return tx.fetchall("SELECT seq, sealed_at, heads, mac FROM audit_seals ORDER BY seq")


def seal(store: ReadStore, key: bytes) -> dict[str, Any]:
    """Sign the head (version, hash) of every chain; returns the seal."""
    with store.transaction() as tx:
        tx.raw(SEALS_DDL)
        rows = tx.fetchall(
            "SELECT h.originator_id, h.originator_version, h.hash FROM event_hashes h "
            "JOIN (SELECT originator_id, MAX(originator_version) AS v FROM event_hashes GROUP BY originator_id) m "
            "ON h.originator_id = m.originator_id AND h.originator_version = m.v"
        )
        heads = orjson.dumps(
            {a: [int(v), h] for a, v, h in rows}, option=orjson.OPT_SORT_KEYS
        ).decode()
        sealed_at = datetime.now(UTC).isoformat(timespec="microseconds")
        last = tx.fetchone("SELECT COALESCE(MAX(seq), 0) FROM audit_seals")
        seq = (int(last[0]) if last else 0) + 1
        mac = _mac(key, sealed_at, heads)
        tx.execute("INSERT INTO audit_seals VALUES (?, ?, ?, ?)", (seq, sealed_at, heads, mac))
    return {"seq": seq, "sealed_at": sealed_at, "chains": len(rows), "mac": mac}


def _seal_problems(
    tx: Tx, key: bytes, links: dict[str, dict[int, tuple[str, str]]], aggregate: str | None
) -> list[str]:
    problems = []
    for seq, sealed_at, heads, mac in stored_seals(tx):
        if not hmac.compare_digest(_mac(key, sealed_at, heads), mac):
            problems.append(
                f"seal {seq} ({sealed_at}): signature does not match its content (altered)"
            )
            continue
        for head, (version, digest) in orjson.loads(heads).items():
            if aggregate is not None and head != aggregate:
                continue
            if links.get(head, {}).get(version, ("", ""))[1] != digest:
                problems.append(
                    f"{_name(head)} version {version}: sealed in seal {seq} but missing or changed"
                )
    return problems


def verify(
    store: ReadStore, key: bytes, events_table: str, customer_id: UUID | None = None
) -> dict[str, Any]:
    """Check chains (one customer or all) and every seal; ``ok`` is true when nothing broke.

    ``events_table`` is the event store's table (``EventStore.events_table``).
    """
    aggregate = None if customer_id is None else customer_id.hex
    with store.transaction() as tx:
        links = _links(tx, aggregate)
        problems = _chain_problems(_events(tx, events_table, aggregate), links)
        problems += _seal_problems(tx, key, links, aggregate)
        seals = tx.fetchone("SELECT COUNT(*) FROM audit_seals")
    checked = sum(len(v) for v in links.values())
    return {
        "ok": not problems,
        "events_checked": checked,
        "seals": int(seals[0]) if seals else 0,
        "problems": problems,
    }
