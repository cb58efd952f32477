"""Issue 14 item 6 over HTTP: /docs works offline, every batch command type is documented
with an example that parses, and /projections is open like the other ops routes."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from api.http.batch_docs import BATCH_COMMANDS, batch_example
from commands.messages import COMMAND_TYPES, parse_command
from tests.api_support import Api, running_api

BODY_REFUSALS = {"400", "411", "413", "415", "422"}

pytestmark = pytest.mark.integration
ASSET = re.compile(r"""(?:src|href)=["']([^"']+)["']|url: ?'([^']+)'""")


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Api]:
    with running_api(tmp_path) as running:
        yield running


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_the_docs_load_only_local_assets(api: Api, page: str) -> None:
    """/docs loaded Swagger UI from a CDN and stayed blank offline."""
    html = api.client.get(page)
    assert html.status_code == 200
    assets = [a or b for a, b in ASSET.findall(html.text)]
    assert assets, html.text
    assert not [a for a in assets if not a.startswith("/")], assets  # no http(s)://, no //cdn
    assert "cdn" not in html.text.lower() and "googleapis" not in html.text
    for asset in assets:
        served = api.client.get(asset)
        assert served.status_code == 200, asset
        assert len(served.content) > 1000, asset
    scripts = [a for a in assets if a.endswith(".js")]
    assert scripts and all(
        api.client.get(s).headers["content-type"].startswith("text/javascript") for s in scripts
    )


def test_every_batch_command_type_is_documented_with_an_example(api: Api) -> None:
    """The types appeared only in a validation error."""
    doc = api.client.get("/openapi.json").json()
    schemas: dict[str, Any] = doc["components"]["schemas"]
    items = schemas["BatchRequest"]["properties"]["commands"]["items"]
    assert items["discriminator"]["propertyName"] == "type"
    mapping = items["discriminator"]["mapping"]
    assert set(mapping) == set(COMMAND_TYPES) == set(BATCH_COMMANDS)
    examples = doc["paths"]["/v1/commands:batch"]["post"]["requestBody"]["content"][
        "application/json"
    ]["examples"]
    assert set(examples) == set(COMMAND_TYPES)
    for name, ref in mapping.items():
        schema = schemas[ref.rsplit("/", 1)[1]]
        assert schema["properties"]["type"]["const"] == name
        assert "type" in schema["required"] and schema["description"]
        example = schema["examples"][0]
        assert example == batch_example(name) == examples[name]["value"]["commands"][0]
        assert set(example) <= set(schema["properties"]), name
        assert set(schema["required"]) <= set(example), name
        assert name == parse_command(example).NAME  # the one parser accepts it


def test_the_batch_route_accepts_and_rejects_as_before(api: Api) -> None:
    """Documentation only: a bad command is still a rejected result, not a 422 of the batch."""
    writer = api.headers("writer")
    answer = api.client.post(
        "/v1/commands:batch",
        json={"commands": [{"type": "teleport"}, {"type": "register", "name": "Ada"}]},
        headers=writer,
    )
    assert answer.status_code == 200, answer.text
    rejected, accepted = answer.json()["results"]
    assert rejected["status"] == "rejected" and rejected["problem"]["field"] == "type"
    assert "one of" in str(rejected["problem"]) and accepted["status"] == "accepted"
    empty = api.client.post("/v1/commands:batch", json={"commands": []}, headers=writer)
    assert empty.status_code == 422 and empty.json()["field"].endswith("commands")


def test_projections_is_open_and_shows_identities_to_readers_only(api: Api) -> None:
    anonymous = api.client.get("/projections")
    assert anonymous.status_code == 200
    assert {row["name"] for row in anonymous.json()["projections"]} >= {"profiles", "audit"}
    assert all(row["state"] == "live" for row in anonymous.json()["projections"])
    bad = api.client.get("/projections", headers={"Authorization": "Bearer clt_nope_x"})
    assert bad.status_code == 401
    assert api.client.get("/projections", headers=api.headers("reader")).status_code == 200
    ready = api.client.get("/readyz").json()
    assert ready["status"] == "ready" and ready["state"] == "live"


def test_every_operation_that_takes_a_body_documents_the_refusals_of_a_body(api: Api) -> None:
    """``DELETE .../tags/{tag}`` takes an optional body, and answered an undocumented 400 for a
    malformed one (found by schemathesis): every operation with a request body documents what
    the edge answers for any body (malformed, no length, too large, wrong type, invalid)."""
    doc = api.client.get("/openapi.json").json()
    undocumented = {
        f"{method.upper()} {path}": sorted(BODY_REFUSALS - set(operation["responses"]))
        for path, item in doc["paths"].items()
        for method, operation in item.items()
        if "requestBody" in operation and not BODY_REFUSALS.issubset(operation["responses"])
    }
    assert undocumented == {}
