"""Fuzzing ``POST /v1/commands:batch`` with command documents (the same strategy as the command
topic's, :mod:`tests.unit.test_fuzz_commands`): never a 5xx; a 200 holds one result per command,
each applied or rejected with a problem, a 422 is problem+json naming its field."""

from __future__ import annotations

from typing import Any
from uuid import uuid4

import pytest
from hypothesis import event, example, given
from hypothesis import strategies as st

from tests.api_support import Api
from tests.fuzz_support import JSON_VALUES, fuzz, json_bytes
from tests.unit.test_fuzz_commands import COMMANDS, CUSTOMER, DOCS, REGISTER

pytestmark = [pytest.mark.integration, pytest.mark.backends("postgres")]

BATCHES = (
    st.lists(st.one_of(COMMANDS, COMMANDS, DOCS, JSON_VALUES), max_size=4).map(
        lambda c: {"commands": [REGISTER, *c]}
    )
    | JSON_VALUES
)


def _post(api: Api, body: bytes) -> None:
    response = api.client.post(
        "/v1/commands:batch",
        content=body,
        headers=api.headers("writer", **{"Content-Type": "application/json"}),
    )
    assert response.status_code < 500, response.text
    event(f"HTTP {response.status_code}")
    if response.status_code == 200:
        for result in response.json()["results"]:
            event(f"result {result['status']}")
            assert result["status"] != "rejected" or result["problem"]["code"], result
            if result["status"] == "rejected" and result["problem"]["code"] == "validation":
                assert result["problem"]["field"], result
    else:
        assert response.headers["content-type"].startswith("application/problem+json")
        if response.status_code == 422:
            assert response.json().get("field"), response.text


@fuzz(60)
@given(batch=BATCHES, cut=st.none() | st.integers(min_value=0))
@example(batch={"commands": [{"type": "earn_points", "points": 2**64}]}, cut=None)
@example(batch={"commands": [{"type": "register", "name": "A", "\udfff": 1}]}, cut=None)
@example(batch={"commands": [{"type": "purchase", "amount": "1e999"}]}, cut=None)
def test_fuzzed_batches_never_answer_5xx(api: Api, batch: Any, cut: int | None) -> None:
    customer = str(uuid4())  # each example on a customer of its own
    raw = json_bytes(batch).replace(CUSTOMER.encode(), customer.encode())
    _post(api, raw if cut is None else raw[: cut % (len(raw) + 1)])
