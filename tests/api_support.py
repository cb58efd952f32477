"""An in-process API on a throwaway SQLite database, with one key per role."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.testclient import TestClient

from api.http.app import create_app
from api.http.hot_path import HotProfileReads
from bootstrap import build
from infra.api_keys import KeyStore, Role
from infra.settings import Settings


@dataclass
class Api:
    app: FastAPI
    client: TestClient
    tokens: dict[str, str]

    def headers(self, who: str, **extra: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[who]}", **extra}


@contextmanager
def running_api(tmp_path: Path, database_url: str | None = None, **overrides: Any) -> Iterator[Api]:
    """``overrides``: further settings (``Settings`` field names). The policy runner does not
    run inside this API unless ``policies_in_serve=True``: tests drive sweeps at the business
    times they choose."""
    settings = Settings(
        database_url=database_url or f"sqlite:///{tmp_path / 'api.db'}",
        api_keys_file=tmp_path / "keys.json",
        default_phone_region="DE",
        **({"policies_in_serve": False} | overrides),
    )
    keys = KeyStore(settings.api_keys_file)
    tokens = {role.value: keys.create(role.value, [role])[1] for role in Role}
    tokens["reader+pii"] = keys.create("pii-reader", [Role.READER], pii=True)[1]
    tokens["writer+reader"] = keys.create("service", [Role.WRITER, Role.READER])[1]
    app = create_app(build(settings))
    with TestClient(app) as client:
        yield Api(app, client, tokens)


def send(api: Api, method: str, path: str, body: Any = None, **headers: str) -> Any:
    """A request as an admin, with JSON as a client writes it: ASCII, so an unpaired surrogate
    travels as ``\\ud800``."""
    extra = {"content-type": "application/json"} if body is not None else {}
    return api.client.request(
        method,
        path,
        content=None if body is None else json.dumps(body).encode(),
        headers=api.headers("admin", **extra, **headers),
    )


OWN_IDS = ("x-request-id", "x-correlation-id")
"""Headers each response names its own request by: left out when two answers are compared."""


def hot_path(api: Api) -> HotProfileReads:
    """The app's hot-path middleware (its stack is built by the first request)."""
    layer: Any = api.app.middleware_stack
    while not isinstance(layer, HotProfileReads):
        layer = layer.app
    return layer


def answer(api: Api, path: str, headers: dict[str, str]) -> tuple[int, bytes, dict[str, str]]:
    """GET ``path``: (status, body, headers but :data:`OWN_IDS`, which it must carry)."""
    response = api.client.get(path, headers=headers)
    assert set(OWN_IDS) <= set(response.headers), response.headers
    kept = {k: v for k, v in response.headers.items() if k not in OWN_IDS}
    return response.status_code, response.content, kept
