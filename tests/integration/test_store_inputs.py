"""What the store's batch reads and links make of odd inputs, on every backend: ids as text
are refused with a clear :class:`TypeError` (not an ``AttributeError`` deep in a backend, nor
nothing found), and an empty batch has no hash links."""

from __future__ import annotations

from uuid import UUID

import psycopg
import pytest

from infra.store import EventStore
from infra.tamper_evidence.chain import chain, postgres_links

ANY_BACKEND = pytest.mark.backends("memory", "sqlite", "postgres")


@ANY_BACKEND
@pytest.mark.parametrize("known", [False, True], ids=["cold", "known"])
def test_ids_as_text_are_refused_by_name(store: EventStore, known: bool) -> None:
    customer = UUID("0b5f4f0e-8d8a-4c1e-8f55-7f1f0c2f3a61")
    for text in (str(customer), customer.hex):
        with pytest.raises(TypeError, match=r"uuid\.UUID, not str"):
            store.backend.latest([customer, text], {customer: 1} if known else {})  # type: ignore[list-item]


def test_an_empty_batch_has_no_links() -> None:
    def head(_pairs: list[tuple[str, int]]) -> dict[tuple[str, int], str]:
        raise AssertionError("no heads to look up")

    assert chain([], head) == []


@pytest.mark.backends("postgres")
def test_an_empty_batch_writes_no_links_on_postgresql(store: EventStore, database_url: str) -> None:
    with psycopg.connect(database_url) as connection, connection.cursor() as cursor:
        postgres_links(cursor, [])
        assert cursor.pgresult is None  # no statement sent
        cursor.execute("SELECT count(*) FROM event_hashes")
        assert cursor.fetchone() == (0,)


@pytest.mark.backends("postgres")
@pytest.mark.parametrize("where", ["url", "environment"])
def test_the_stores_connections_run_without_jit_and_keep_libpq_options(
    database_url: str, where: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """JIT compiled the batch prefetch at every batch once the store held ~40k events
    (:data:`infra.backends.postgres.NO_JIT`); libpq ``options`` of the URL or of
    ``PGOPTIONS`` still apply (a start-up option would have replaced ``PGOPTIONS``)."""
    url = database_url
    if where == "url":
        url += "?options=-c%20statement_timeout%3D4321"
    else:
        monkeypatch.setenv("PGOPTIONS", "-c statement_timeout=4321")
    store = EventStore(url)
    try:
        with store.backend.datastore.transaction(commit=False) as cursor:  # type: ignore[attr-defined]
            cursor.execute(
                "SELECT current_setting('jit') AS jit, "
                "current_setting('statement_timeout') AS statement_timeout"
            )
            assert cursor.fetchone() == {"jit": "off", "statement_timeout": "4321ms"}
    finally:
        store.close()
