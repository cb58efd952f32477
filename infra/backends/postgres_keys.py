"""Data keys on PostgreSQL: fixed statements with binary arrays, a new batch's keys in one.

:class:`~infra.data_keys.SqlDataKeys` loads with an ``IN`` list of one parameter per customer
(a new statement for psycopg to convert at every batch size) and creates keys in three
transactions: a miss, an ``executemany`` of the new rows, and a load of them back (12 % of a
registration batch's CPU). Here a load is one statement with one ``text[]`` parameter, and
creating is one: the rows go in as three binary arrays, ``ON CONFLICT DO NOTHING``, and
``RETURNING`` hands back the ones stored (all arrays packed in one go: :mod:`infra.pg_arrays`).
Only customers whose key a racing writer stored first are loaded after it (their winner's
key), as before.
"""

from __future__ import annotations

from collections.abc import Sequence

from infra.data_keys import Row, SqlDataKeys, now_text
from infra.pg_arrays import Byteas, Texts

_LOAD = (
    "SELECT customer_id, master_key_id, wrapped FROM customer_keys "
    "WHERE customer_id = ANY(%b::text[])"
)
_CREATE = (
    "INSERT INTO customer_keys (customer_id, master_key_id, wrapped, created_at) "
    "SELECT c, k, w, %b::text FROM unnest(%b::text[], %b::text[], %b::bytea[]) AS t(c, k, w) "
    "ON CONFLICT (customer_id) DO NOTHING RETURNING customer_id, master_key_id, wrapped"
)


class PostgresDataKeys(SqlDataKeys):
    """:class:`SqlDataKeys` with PostgreSQL's arrays (same table, same rules)."""

    def _load(self, customer_ids: Sequence[str]) -> dict[str, Row]:
        rows = self._rows(_LOAD, [Texts(customer_ids)]) if customer_ids else []
        return {row[0]: row for row in rows}

    def _create(self, rows: Sequence[Row]) -> dict[str, Row]:
        if not rows:
            return {}
        ids, key_ids, wrapped = zip(*rows, strict=True)
        created = self._rows(
            _CREATE, [now_text(), Texts(ids), Texts(key_ids), Byteas(wrapped)], commit=True
        )
        stored = {row[0]: row for row in created}
        lost = [customer for customer in ids if customer not in stored]
        return stored | (self._load(lost) if lost else {})
