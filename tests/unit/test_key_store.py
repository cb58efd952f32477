"""The key file is read again when it changes (one ``stat`` a request): a key made or revoked
by another process (``clientele keys``) counts at the next request; no file, no keys."""

from __future__ import annotations

import os
from pathlib import Path

from infra.api_keys import KeyStore, Role


def test_keys_follow_the_file_without_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    serving = KeyStore(path)
    assert serving.authenticate("clt_abc_def") is None  # no file yet: no keys
    key, token = KeyStore(path).create("svc", [Role.READER])  # another process makes one
    found = serving.authenticate(token)
    assert found is not None and found.key_id == key.key_id
    mtime = path.stat().st_mtime_ns
    KeyStore(path).revoke(key.key_id)
    os.utime(path, ns=(mtime, mtime))  # a save within the same timestamp tick
    assert serving.authenticate(token) is None  # revoked: refused at once
    path.unlink()
    assert serving.authenticate(token) is None
