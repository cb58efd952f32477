"""``clientele migrate``: create or upgrade the tables of the event store and read models."""

from __future__ import annotations

from api.cli.support import console


def migrate() -> None:
    """Create or upgrade the event store and read-model tables (idempotent).

    A read model whose schema version changed is rebuilt from the event store.

    Example: CLIENTELE_DATABASE_URL=postgresql://postgres@127.0.0.1:5432/clientele clientele migrate
    """
    from bootstrap import build
    from consumers.migrate import migrate as migrate_tables

    with build() as services:
        rebuilt = migrate_tables(services)
        console.print(f"event store at position {services.store.head()}; read models ready")
        for name in rebuilt:
            console.print(f"rebuilt {name} (schema changed)")
