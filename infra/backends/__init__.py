"""Event-store backends, one module each, chosen once from the database URL.

* :mod:`.sqlite` (``sqlite:///…``, embedded), :mod:`.postgres` (``postgresql://…``, full) and
  :mod:`.memory` (``memory://``, unit tests) each define an events recorder that subclasses
  eventsourcing's recorder of that backend and :class:`.base.StoreBackend`;
* :func:`store_environment` turns the URL into eventsourcing's settings that select them.
"""

from __future__ import annotations

import math
from pathlib import Path
from urllib.parse import unquote, urlsplit

POSTGRES_FACTORY = "infra.backends.postgres:Factory"  # eventsourcing's, with our recorders


POOL_TIMEOUT = "CLIENTELE_POOL_TIMEOUT"  # seconds, read by .postgres.Factory


def store_environment(
    database_url: str, *, pool_size: int = 5, timeout: float = 3.0
) -> dict[str, str]:
    """Translate a database URL into eventsourcing's environment variables; raises
    ``ValueError`` for a scheme other than sqlite, postgresql (postgres) or memory.

    PostgreSQL: one to ``pool_size`` connections, each checked before use (``PRE_PING``), a
    caller waits at most ``timeout`` seconds for one (as the read store's pool does)."""
    parts = urlsplit(database_url)
    env = {"TRANSCODER_TOPIC": "infra.transcoder:OrjsonTranscoder"}
    if parts.scheme == "memory":
        env["PERSISTENCE_MODULE"] = "infra.backends.memory:Factory"
    elif parts.scheme == "sqlite":
        path = unquote(database_url.removeprefix("sqlite:///").removeprefix("sqlite://"))
        if path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        env |= {
            "PERSISTENCE_MODULE": "eventsourcing.sqlite",
            "SQLITE_DBNAME": path,
            "SQLITE_LOCK_TIMEOUT": "30",
            "APPLICATION_RECORDER_TOPIC": "infra.backends.sqlite:ChainedSQLiteRecorder",
        }
    elif parts.scheme in ("postgresql", "postgres"):
        env |= {
            "PERSISTENCE_MODULE": POSTGRES_FACTORY,
            "POSTGRES_DBNAME": parts.path.lstrip("/") or "clientele",
            "POSTGRES_HOST": parts.hostname or "127.0.0.1",
            "POSTGRES_PORT": str(parts.port or 5432),
            "POSTGRES_USER": unquote(parts.username or "postgres"),
            "POSTGRES_PASSWORD": unquote(parts.password or ""),
            # one connection kept open, up to ``pool_size`` on demand (eventsourcing: min_size
            # is the pool size, max_size the pool size plus the overflow)
            "POSTGRES_POOL_SIZE": "1",
            "POSTGRES_MAX_OVERFLOW": str(pool_size - 1),
            "POSTGRES_LOCK_TIMEOUT": "10",
            "POSTGRES_CONNECT_TIMEOUT": str(math.ceil(timeout)),  # whole seconds only
            POOL_TIMEOUT: str(timeout),
            "POSTGRES_PRE_PING": "y",
            # libpq parameters of the URL's query (sslmode, sslrootcert, …): every connection
            "POSTGRES_CONNECTION_OPTIONS": parts.query,
            "APPLICATION_RECORDER_TOPIC": "infra.backends.postgres:GaplessPostgresRecorder",
        }
    else:
        msg = f"unsupported database URL scheme {parts.scheme!r} (use sqlite, postgresql, memory)"
        raise ValueError(msg)
    return env
