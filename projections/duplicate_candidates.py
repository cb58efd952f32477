"""Duplicate candidates: what a scan found, and the check of one new record.

A scan (:func:`scan`) reads the live records of the duplicates read model
(:mod:`projections.duplicates`), estimates the match model's ``u`` from them, compares the
candidate pairs (all of them on the first or a ``full`` scan, otherwise only pairs with a
record changed since the last scan, scored with the model that scan estimated) and keeps the pairs scoring at least
:data:`KEEP_PROBABILITY` in ``duplicate_candidates`` with their evidence and fingerprint.
``duplicate_scans`` remembers the position the scan read at and the model it used.

The candidates are a cache of a computation over the read model, not a projection: listing
(:func:`list_candidates`) joins them with the read model, so a merged or erased customer and
a dismissed pair (same fingerprint) drop out at once, before any new scan.
"""

from __future__ import annotations

import base64
import weakref
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from domain.duplicates.blocking import MAX_BLOCK, exact_keys
from domain.duplicates.detect import Candidate, find_candidates, fingerprint
from domain.duplicates.model import DEFAULT_THRESHOLD, MatchModel
from domain.duplicates.records import MatchRecord, match_record
from infra.read_tx import Tx
from infra.readstore import ReadStore
from infra.sql_chunks import among, chunks
from projections import framework
from projections.duplicates import DuplicatesProjector
from projections.framework import now_iso

KEEP_PROBABILITY = 0.5
"""Pairs scoring below are not kept (``GET /v1/duplicates?min_score=`` goes no lower)."""
SCHEMA = (
    """CREATE TABLE IF NOT EXISTS duplicate_candidates (
        pair_id TEXT PRIMARY KEY,
        first_id TEXT NOT NULL,
        second_id TEXT NOT NULL,
        probability DOUBLE PRECISION NOT NULL,
        weight DOUBLE PRECISION NOT NULL,
        evidence TEXT NOT NULL,
        fingerprint TEXT NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS duplicate_candidates_rank_idx ON duplicate_candidates (probability, pair_id)",
    "CREATE INDEX IF NOT EXISTS duplicate_candidates_first_idx ON duplicate_candidates (first_id)",
    "CREATE INDEX IF NOT EXISTS duplicate_candidates_second_idx ON duplicate_candidates (second_id)",
    """CREATE TABLE IF NOT EXISTS duplicate_scans (
        scope TEXT PRIMARY KEY,
        position BIGINT NOT NULL,
        model TEXT NOT NULL,
        customers BIGINT NOT NULL,
        scanned_at TEXT NOT NULL)""",
)


@dataclass(frozen=True)
class ScanResult:
    """``customers`` live customers read at ``position``; ``compared`` the records re-compared
    (all on a full scan); ``candidates`` pairs kept; ``full`` whether every pair was compared."""

    position: int
    customers: int
    compared: int
    candidates: int
    full: bool


_READY: weakref.WeakSet[ReadStore] = weakref.WeakSet()


def ensure_schema(read_store: ReadStore) -> None:
    """Create the duplicates read model's tables (before any feed did) and the scan's, once
    per read store and process."""
    if read_store in _READY:
        return
    framework.ensure_schema(read_store, [DuplicatesProjector()])
    with read_store.transaction() as tx:
        for statement in SCHEMA:
            tx.execute(statement)
    _READY.add(read_store)


def _live_records(tx: Tx) -> tuple[list[MatchRecord], dict[str, int]]:
    rows = tx.fetchall(
        "SELECT customer_id, state, position FROM {duplicate_records} WHERE live = 1 "
        "ORDER BY customer_id"  # the model's random sample is the same for the same base
    )
    records = [match_record(cid, orjson.loads(state)) for cid, state, _ in rows]
    return records, {cid: int(position) for cid, _, position in rows}


def _last_scan(tx: Tx) -> tuple[int, MatchModel] | None:
    row = tx.fetchone("SELECT position, model FROM duplicate_scans WHERE scope = 'scan'")
    return None if row is None else (int(row[0]), MatchModel.from_json(orjson.loads(row[1])))


def scan(
    read_store: ReadStore,
    *,
    full: bool = False,
    progress: Callable[[int], None] | None = None,
) -> ScanResult:
    """Scan for duplicates (see the module docstring); ``progress`` is told how many more
    candidate pairs were compared, as it goes."""
    ensure_schema(read_store)
    with read_store.snapshot() as tx:
        row = tx.fetchone("SELECT position FROM projection_state WHERE name = 'duplicates'")
        position = int(row[0]) if row else 0
        records, positions = _live_records(tx)
        last = _last_scan(tx)
        gone = {
            cid
            for (cid,) in tx.fetchall(
                "SELECT customer_id FROM {duplicate_records} WHERE live = 0 AND position > ?",
                (0 if last is None else last[0],),
            )
        }
    since = 0 if full or last is None else last[0]
    changed = None if since == 0 else {cid for cid, p in positions.items() if p > since}
    # A full scan estimates the model afresh; an incremental one keeps the last scan's (so its
    # pairs are scored as those it keeps), for the base's size now.
    model = MatchModel.estimate(records) if last is None or changed is None else last[1]
    model = model.with_population(len(records))
    found = find_candidates(records, model, KEEP_PROBABILITY, changed, progress)
    with read_store.transaction() as tx:
        if changed is None:
            tx.execute("DELETE FROM duplicate_candidates")
        else:
            stale = sorted(changed | gone)
            for chunk in chunks(stale):
                first, params = tx.any_of("first_id", chunk)
                second, more = tx.any_of("second_id", chunk)
                tx.execute(
                    f"DELETE FROM duplicate_candidates WHERE {first} OR {second}", [*params, *more]
                )
        _keep(tx, found)
        tx.execute(
            "INSERT INTO duplicate_scans (scope, position, model, customers, scanned_at) "
            "VALUES ('scan', ?, ?, ?, ?) ON CONFLICT (scope) DO UPDATE SET position = excluded.position, "
            "model = excluded.model, customers = excluded.customers, scanned_at = excluded.scanned_at",
            (position, orjson.dumps(model.to_json()).decode(), len(records), now_iso()),
        )
    compared = len(records) if changed is None else len(changed)
    return ScanResult(position, len(records), compared, len(found), changed is None)


def _keep(tx: Tx, found: list[Candidate]) -> None:
    tx.executemany(
        "INSERT INTO duplicate_candidates (pair_id, first_id, second_id, probability, weight, "
        "evidence, fingerprint) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (pair_id) DO UPDATE SET "
        "probability = excluded.probability, weight = excluded.weight, "
        "evidence = excluded.evidence, fingerprint = excluded.fingerprint",
        [_row(c) for c in found],
    )


def _row(c: Candidate) -> tuple[Any, ...]:
    return (
        c.pair_id,
        c.first,
        c.second,
        c.match.probability,
        c.match.weight,
        orjson.dumps(c.match.evidence).decode(),
        c.fingerprint,
    )


def _cursor(probability: float, pair_id: str) -> str:
    return base64.urlsafe_b64encode(orjson.dumps([probability, pair_id])).decode()


def parse_cursor(cursor: str) -> tuple[float, str]:
    """The (probability, pair id) a page ends at; ValueError if ``cursor`` is not one of ours."""
    try:
        probability, pair_id = orjson.loads(base64.urlsafe_b64decode(cursor.encode()))
    except Exception as error:
        raise ValueError("not a cursor of this list") from error
    if not isinstance(probability, float | int) or not isinstance(pair_id, str):
        raise ValueError("not a cursor of this list")
    return float(probability), pair_id


def list_candidates(
    read_store: ReadStore, min_score: float, limit: int, cursor: str | None = None
) -> tuple[list[dict[str, Any]], str | None]:
    """Live, undismissed pairs scoring at least ``min_score``, most probable first:
    ``[{pair_id, customer_ids: [a, b], probability, weight, evidence, fingerprint}]`` and the
    next page's cursor (None on the last page). ValueError for a bad ``cursor``."""
    where, params = "", []
    if cursor:
        probability, pair_id = parse_cursor(cursor)
        where = "AND (c.probability < ? OR (c.probability = ? AND c.pair_id > ?))"
        params = [probability, probability, pair_id]
    rows = _listed(read_store, where, [min_score, *params], limit + 1)
    items = rows[:limit]
    more = len(rows) > limit
    return items, _cursor(items[-1]["probability"], items[-1]["pair_id"]) if more else None


def candidate(read_store: ReadStore, pair_id: str) -> dict[str, Any] | None:
    """One listed pair (as in :func:`list_candidates`), or None when it is not listed (never
    found, below the kept score, dismissed, or a customer merged or erased)."""
    rows = _listed(read_store, "AND c.pair_id = ?", [0.0, pair_id], 1)
    return rows[0] if rows else None


def _listed(
    read_store: ReadStore, where: str, params: list[Any], limit: int
) -> list[dict[str, Any]]:
    ensure_schema(read_store)
    with read_store.snapshot() as tx:
        rows = tx.fetchall(
            "SELECT c.pair_id, c.first_id, c.second_id, c.probability, c.weight, c.evidence, "
            "c.fingerprint FROM duplicate_candidates c "
            "JOIN {duplicate_records} a ON a.customer_id = c.first_id AND a.live = 1 "
            "JOIN {duplicate_records} b ON b.customer_id = c.second_id AND b.live = 1 "
            "LEFT JOIN {duplicate_dismissals} d ON d.pair_id = c.pair_id "
            "WHERE c.probability >= ? AND (d.fingerprint IS NULL OR d.fingerprint <> c.fingerprint) "
            f"{where} ORDER BY c.probability DESC, c.pair_id LIMIT ?",
            [*params, limit],
        )
    return [
        {
            "pair_id": pair_id,
            "customer_ids": [first, second],
            "probability": float(probability),
            "weight": float(weight),
            "evidence": orjson.loads(evidence),
            "fingerprint": fingerprint,
        }
        for pair_id, first, second, probability, weight, evidence, fingerprint in rows
    ]


class RegistrationCheck:
    """Compares new customers with the live base (the duplicates read model: the records
    sharing an exact key, :func:`domain.duplicates.blocking.exact_keys`) and with the new
    customers checked before them by this same check (an import finds duplicates within its
    own file). Scores with the last scan's model (the default one before any scan) at the
    default threshold. A duplicate sharing no exact key (a typo in the name and nothing else
    in common but the address's spelling) is left to the next scan, which also blocks on
    typo-tolerant name keys: a registration stays a few index lookups. The pairs it finds are
    kept in ``duplicate_candidates`` at once (listed as soon as the read model has both
    customers; the next scan compares the new customer again, as one changed since)."""

    def __init__(self, read_store: ReadStore) -> None:
        self.read_store = read_store
        ensure_schema(read_store)
        with read_store.snapshot() as tx:
            last = _last_scan(tx)
            row = None
            if last is None:
                row = tx.fetchone("SELECT COUNT(*) FROM {duplicate_records} WHERE live = 1")
        # the base's size for the prior: as of the last scan (no count on every registration)
        self.model = last[1] if last else MatchModel.default(int(row[0]) if row else 0)
        self.population = self.model.population
        self.seen: dict[str, list[MatchRecord]] = defaultdict(list)

    def check(self, new: list[tuple[str, dict[str, Any]]]) -> list[list[dict[str, Any]]]:
        """For each ``(customer_id, profile)`` (name, email, phone, attributes, external_ids as
        registered), the customers it probably duplicates, most probable first:
        ``[{customer_id, probability, evidence}]``."""
        records = [match_record(cid, profile) for cid, profile in new]
        keys = [sorted(exact_keys(r)) for r in records]
        holders = self._holders(sorted({k for ks in keys for k in ks}))
        with self.read_store.snapshot() as tx:
            states = _states(tx, sorted({c for cids in holders.values() for c in cids}))
        base = {cid: match_record(cid, state) for cid, state in states.items()}
        self.population += len(records)
        model = self.model.with_population(self.population)
        answers = []
        kept: list[Candidate] = []
        for record, record_keys in zip(records, keys, strict=True):
            others = {
                cid: base[cid] for k in record_keys for cid in holders.get(k, ()) if cid in base
            }
            others.update((r.customer_id, r) for k in record_keys for r in self.seen.get(k, ()))
            others.pop(record.customer_id, None)
            found = [(cid, model.score(record, other)) for cid, other in others.items()]
            found = [(cid, m) for cid, m in found if m.probability >= DEFAULT_THRESHOLD]
            found.sort(key=lambda item: (-item[1].probability, item[0]))
            for cid, m in found:
                low, high = sorted((record, others[cid]), key=lambda r: r.customer_id)
                kept.append(Candidate(low.customer_id, high.customer_id, m, fingerprint(low, high)))
            answers.append(
                [
                    {"customer_id": c, "probability": m.probability, "evidence": m.evidence}
                    for c, m in found
                ]
            )
            for key in record_keys:
                if len(self.seen[key]) < MAX_BLOCK:
                    self.seen[key].append(record)
        if kept:
            with self.read_store.transaction() as tx:
                _keep(tx, kept)
        return answers

    def _holders(self, keys: list[str]) -> dict[str, list[str]]:
        """The live customers holding each key (keys held by more than MAX_BLOCK left out)."""
        holders: dict[str, list[str]] = defaultdict(list)
        with self.read_store.snapshot() as tx:
            for condition, params in among(tx, "key", keys):
                rows = tx.fetchall(
                    f"SELECT key, customer_id FROM {{duplicate_keys}} WHERE {condition}", params
                )
                for key, cid in rows:
                    holders[key].append(cid)
        return {k: cids for k, cids in holders.items() if len(cids) <= MAX_BLOCK}


def check(read_store: ReadStore, customer_id: str, profile: dict[str, Any]) -> list[dict[str, Any]]:
    """The live customers one new ``profile`` probably duplicates (:class:`RegistrationCheck`)."""
    return RegistrationCheck(read_store).check([(customer_id, profile)])[0]


def _states(tx: Tx, customers: list[str]) -> dict[str, dict[str, Any]]:
    states: dict[str, dict[str, Any]] = {}
    for condition, params in among(tx, "customer_id", customers):
        rows = tx.fetchall(
            f"SELECT customer_id, state FROM {{duplicate_records}} WHERE live = 1 AND {condition}",
            params,
        )
        states.update({cid: orjson.loads(state) for cid, state in rows})
    return states
