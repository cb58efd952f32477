"""Parameters the served OpenAPI document declares are accepted by the API: a value that
matches a parameter's schema is never refused for its syntax (schemathesis'
``positive_data_acceptance``: external-id systems used to be bare strings, so generated
values were refused with 422)."""

from __future__ import annotations

import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from api.http.app import create_app
from domain.external_ids import SYSTEM_PATTERN, normalise_system

# (where, name) -> the pattern the document must declare for it
DECLARED = {
    ("path", "system"): SYSTEM_PATTERN,
    ("query", "external_system"): SYSTEM_PATTERN,
}


@pytest.fixture(scope="module")
def parameters() -> list[tuple[str, dict[str, Any]]]:
    document = create_app().openapi()
    return [
        (f"{method.upper()} {path}", parameter)
        for path, operations in document["paths"].items()
        for method, operation in operations.items()
        for parameter in operation.get("parameters", [])
    ]


def test_every_such_parameter_declares_what_the_api_accepts(
    parameters: list[tuple[str, dict[str, Any]]],
) -> None:
    found = {key: 0 for key in DECLARED}
    for operation, parameter in parameters:
        key = (parameter["in"], parameter["name"])
        if key in DECLARED:
            found[key] += 1
            assert parameter["schema"].get("pattern") == DECLARED[key], (operation, parameter)
    assert all(found.values()), found


@settings(max_examples=300, deadline=None)
@given(st.from_regex(re.compile(SYSTEM_PATTERN), fullmatch=True))
def test_a_declared_system_is_accepted(value: str) -> None:
    assert normalise_system("system", value) == value.lower()
