"""Reads from PostgreSQL without leaving the event loop: the read store's asynchronous twin
for the API's hottest read (GET profile, :mod:`projections.profile_reads`).

A route that reads with it needs no worker thread, which is most of what a request costs in
a sync FastAPI route (BENCHMARKS.md, "Performance round 5"). It keeps the sync pool's outage
behaviour (:class:`infra.readstore.PostgresReadStore`) with one round trip less per read:
instead of checking a connection before it is handed out, a read that finds its connection
broken (a server restart since its last use) checks every idle connection at once, so the
other stale ones are replaced, and runs its statement once more on a fresh connection; a
read is one statement in a read-only autocommit session, so running it again is safe, and no request sees a stale
connection. A caller waits at most ``timeout`` seconds for a connection, then gets
``PoolTimeout`` (an ``OperationalError``: transient, a 503 with ``Retry-After`` at the API's
edge, :mod:`infra.resilience`); so does a read whose second connection is broken too.
Connections are in autocommit: each statement reads one snapshot, with no BEGIN/COMMIT round
trips.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool

from infra.read_tx import Row, render_sql


async def _read_only(connection: psycopg.AsyncConnection[Any]) -> None:
    """Read-only sessions: running a statement again is safe by construction. A session
    ``SET``, not a start-up option, so the URL's or ``PGOPTIONS``' libpq ``options`` still
    apply, and a pooler that refuses start-up options (PgBouncer) still connects, in session
    pooling (a session setting does not follow a client under transaction pooling)."""
    await connection.execute("SET default_transaction_read_only = on")


class AsyncReads:
    """An asynchronous pool of one to ``pool_size`` autocommit connections to ``url``, opened
    by the first read (it must be made and used in one event loop)."""

    def __init__(self, url: str, pool_size: int = 5, *, timeout: float = 3.0) -> None:
        self._url = url
        self._pool_size = pool_size
        self._timeout = timeout
        self._pool: AsyncConnectionPool[psycopg.AsyncConnection[Any]] | None = None
        self._opening = asyncio.Lock()

    async def _opened(self) -> AsyncConnectionPool[psycopg.AsyncConnection[Any]]:
        if self._pool is not None:
            return self._pool
        async with self._opening:  # one pool, however many requests arrive at once
            if self._pool is not None:
                return self._pool
            pool = AsyncConnectionPool(
                self._url,
                min_size=1,
                max_size=self._pool_size,
                open=False,
                kwargs={"autocommit": True},
                configure=_read_only,
                timeout=self._timeout,
                reconnect_timeout=self._timeout,
            )
            await pool.open(wait=False)
            self._pool = pool
            return pool

    async def fetchone(self, statement: str, params: Sequence[Any] = ()) -> Row | None:
        """The first row of one statement (read-store SQL: ``{table}`` names, ``?``
        placeholders), or None; run once more, on another connection, when the first one
        turns out broken."""
        pool = await self._opened()
        sql = render_sql(statement, "postgres")
        async with pool.connection() as connection:
            try:
                return await _first_row(connection, sql, params)
            except psycopg.OperationalError:
                if not connection.broken:
                    raise
        await pool.check()  # the server went away: replace every stale connection
        async with pool.connection() as connection:
            return await _first_row(connection, sql, params)

    def stats(self) -> dict[str, int]:
        """The pool's counters (psycopg_pool's ``get_stats``: ``requests_num``,
        ``connections_num``, …); empty before the first read."""
        return {} if self._pool is None else self._pool.get_stats()

    async def close(self) -> None:
        """Close the pool and its connections (idempotent); a later read opens a new pool."""
        if self._pool is not None:
            await self._pool.close()
            self._pool = None


async def _first_row(
    connection: psycopg.AsyncConnection[Any], sql: str, params: Sequence[Any]
) -> Row | None:
    cursor = await connection.execute(sql, params)
    row = await cursor.fetchone()
    return None if row is None else tuple(row)
