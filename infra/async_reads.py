"""Reads from PostgreSQL without leaving the event loop: the read store's asynchronous twin
for the API's hottest read (GET profile, :mod:`projections.profile_reads`).

A route that reads with it needs no worker thread, which is most of what a request costs in
a sync FastAPI route (BENCHMARKS.md, "Performance round 5"). It keeps the sync pool's outage
behaviour (:class:`infra.readstore.PostgresReadStore`): a connection is checked (one round
trip) before it is handed out, and when one turns out broken every idle connection is checked
at once, so one left over from before a server restart is replaced, never used; a caller
waits at most ``timeout`` seconds for a connection, then gets ``PoolTimeout`` (an
``OperationalError``: transient, a 503 with ``Retry-After`` at the API's edge,
:mod:`infra.resilience`). Connections are in autocommit: each statement reads one snapshot,
with no BEGIN/COMMIT round trips.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool

from infra.read_tx import Row, render_sql


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
                check=self._check,
                timeout=self._timeout,
                reconnect_timeout=self._timeout,
            )
            await pool.open(wait=False)
            self._pool = pool
            return pool

    async def _check(self, connection: psycopg.AsyncConnection[Any]) -> None:
        """psycopg_pool's check (one round trip); a broken connection means the server went
        away since it was last used, so every idle connection is checked at once."""
        try:
            await AsyncConnectionPool.check_connection(connection)
        except Exception:
            if self._pool is not None and not self._pool.closed:
                await self._pool.check()
            raise

    async def fetchone(self, statement: str, params: Sequence[Any] = ()) -> Row | None:
        """The first row of one statement (read-store SQL: ``{table}`` names, ``?``
        placeholders), or None."""
        pool = await self._opened()
        async with pool.connection() as connection:
            cursor = await connection.execute(render_sql(statement, "postgres"), params)
            row = await cursor.fetchone()
        return None if row is None else tuple(row)

    def stats(self) -> dict[str, int]:
        """The pool's counters (psycopg_pool's ``get_stats``: ``requests_num``,
        ``connections_num``, …); empty before the first read."""
        return {} if self._pool is None else self._pool.get_stats()

    async def close(self) -> None:
        """Close the pool and its connections (idempotent); a later read opens a new pool."""
        if self._pool is not None:
            await self._pool.close()
            self._pool = None
