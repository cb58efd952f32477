"""API keys: a JSON file of hashed secrets with roles and the ``pii`` scope.

A key is shown once, when made: ``clt_<key id>_<secret>``. Only SHA-256 of the whole token is
stored (the secret is 256 random bits, so a fast hash is the right tool: there is nothing to
brute-force). Revoked keys stay in the file, marked, for the audit trail.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import threading
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path

import orjson

MAX_NAME_LENGTH = 100


class Role(StrEnum):
    READER = "reader"
    WRITER = "writer"
    AUDITOR = "auditor"
    ADMIN = "admin"
    MARKETER = "marketer"  # campaigns: write them, read their results and audiences


@dataclass(frozen=True)
class ApiKey:
    key_id: str
    name: str
    roles: tuple[str, ...]
    pii: bool
    digest: str
    created_at: str
    revoked_at: str | None = None

    def allows(self, role: Role) -> bool:
        """Admin may do everything; other roles only what they name."""
        return role.value in self.roles or Role.ADMIN.value in self.roles


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class KeyStore:
    """Keys in one JSON file, re-read when the file changes (so revocation is immediate)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._loaded: tuple[int, int, int] | None = None  # the file's (inode, mtime ns, size)
        self._keys: dict[str, ApiKey] = {}

    def _load(self) -> dict[str, ApiKey]:
        with self._lock:
            # one stat per request (it is on every authenticated request's path); a save
            # replaces the file, so its inode tells two saves within one mtime tick apart
            try:
                found = os.stat(self.path)
                seen: tuple[int, int, int] | None = (
                    found.st_ino,
                    found.st_mtime_ns,
                    found.st_size,
                )
            except FileNotFoundError:
                seen = None
            if seen != self._loaded:
                raw = orjson.loads(self.path.read_bytes()) if seen is not None else []
                self._keys = {
                    doc["key_id"]: ApiKey(**{**doc, "roles": tuple(doc["roles"])}) for doc in raw
                }
                self._loaded = seen
            return self._keys

    def _save(self, keys: dict[str, ApiKey]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_suffix(".tmp")
        temporary.write_bytes(
            orjson.dumps([asdict(k) for k in keys.values()], option=orjson.OPT_INDENT_2)
        )
        os.chmod(temporary, 0o600)
        temporary.replace(self.path)

    def create(self, name: str, roles: list[Role], *, pii: bool = False) -> tuple[ApiKey, str]:
        """Make a key; returns it and the token, which is never shown again.

        ``name`` is recorded as the actor (``key:<name>``) of every event the key causes, so it
        is held to the identifier text policy (:func:`domain.text_policy.check_key`, at most 100
        characters): :class:`domain.errors.InvalidInput` otherwise."""
        from domain.text_policy import check_key  # noqa: PLC0415 - the text policy only when making a key

        check_key("name", name, max_length=MAX_NAME_LENGTH)
        key_id = secrets.token_hex(6)
        token = f"clt_{key_id}_{secrets.token_urlsafe(32)}"
        key = ApiKey(
            key_id=key_id,
            name=name,
            roles=tuple(sorted({r.value for r in roles})),
            pii=pii,
            digest=_digest(token),
            created_at=datetime.now(UTC).isoformat(),
        )
        keys = dict(self._load())
        keys[key_id] = key
        self._save(keys)
        return key, token

    def revoke(self, key_id: str) -> ApiKey:
        keys = dict(self._load())
        if key_id not in keys:
            raise KeyError(key_id)
        revoked = ApiKey(**{**asdict(keys[key_id]), "revoked_at": datetime.now(UTC).isoformat()})
        keys[key_id] = revoked
        self._save(keys)
        return revoked

    def list(self) -> list[ApiKey]:
        return sorted(self._load().values(), key=lambda k: k.created_at)

    def authenticate(self, token: str) -> ApiKey | None:
        """The live key behind ``token``, or None (unknown, malformed or revoked)."""
        parts = token.split("_")
        if len(parts) < 3 or parts[0] != "clt":
            return None
        key = self._load().get(parts[1])
        if key is None or key.revoked_at is not None:
            return None
        return key if hmac.compare_digest(key.digest, _digest(token)) else None
