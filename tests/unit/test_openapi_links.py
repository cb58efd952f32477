"""The served OpenAPI document: every ``$ref`` resolves, and its links (:mod:`api.http.links`)
name real operations and parameters and reach every operation on a customer from a
registration."""

from __future__ import annotations

from typing import Any

import pytest

from api.http.app import create_app
from api.http.links import LINKS, REGISTER, STARTS, document_links


@pytest.fixture(scope="module")
def openapi() -> dict[str, Any]:
    return create_app().openapi()


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        own = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return own + [ref for value in node.values() for ref in _refs(value)]
    if isinstance(node, list):
        return [ref for value in node for ref in _refs(value)]
    return []


def test_every_reference_resolves_in_the_document(openapi: dict[str, Any]) -> None:
    """Batch command schemas used to point at ``#/$defs/CustomerRef``, which the document
    does not have (schemathesis skipped those parts of the batch body)."""
    for ref in _refs(openapi):
        node: Any = openapi
        assert ref.startswith("#/"), ref
        for part in ref[2:].split("/"):
            assert part in node, ref
            node = node[part]


def test_links_name_operations_and_parameters_of_the_document(openapi: dict[str, Any]) -> None:
    ids = {op["operationId"]: op for item in openapi["paths"].values() for op in item.values()}
    count = 0
    for item in openapi["paths"].values():
        for operation in item.values():
            for response in operation["responses"].values():
                for link in response.get("links", {}).values():
                    target = ids[link["operationId"]]
                    names = {f"{p['in']}.{p['name']}" for p in target.get("parameters", [])}
                    assert set(link["parameters"]) <= names, link
                    count += 1
    assert count >= 70


def test_a_link_to_a_missing_parameter_is_refused(openapi: dict[str, Any]) -> None:
    broken = {
        "paths": {
            path: {
                method: {**op, "parameters": [], "responses": dict(op["responses"])}
                for method, op in item.items()
            }
            for path, item in openapi["paths"].items()
        }
    }
    with pytest.raises(KeyError, match=r"has no parameter path\.customer_id"):
        document_links(broken)


def test_every_operation_on_a_customer_is_linked_from_a_registration(
    openapi: dict[str, Any],
) -> None:
    """New routes on a customer included: the registration's links come from the document."""
    operations = {
        op["operationId"]: (method.upper(), path)
        for path, item in openapi["paths"].items()
        for method, op in item.items()
    }
    register = openapi["paths"]["/v1/customers"]["post"]["responses"]
    for status in ("201", "200"):
        linked = {operations[link["operationId"]] for link in register[status]["links"].values()}
        on_customer = {
            (method.upper(), path)
            for path, item in openapi["paths"].items()
            for method in item
            if path.startswith("/v1/customers/{customer_id}")
        }
        assert on_customer == linked, sorted(on_customer ^ linked)
        for link in register[status]["links"].values():
            method, _ = operations[link["operationId"]]
            if method != "GET":  # every write on a customer takes If-Match
                assert link["parameters"]["header.if-match"] == "$response.header.ETag", link


def test_walks_start_where_things_are_created() -> None:
    assert REGISTER in STARTS
    assert set(STARTS) - {REGISTER} <= {source for source, _ in LINKS}
