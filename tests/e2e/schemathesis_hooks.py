"""schemathesis hooks for ``st run`` (loaded through ``SCHEMATHESIS_HOOKS``): start stateful
scenarios where the API creates things (:data:`api.http.links.STARTS`).

schemathesis picks the operations a scenario starts with by heuristics: every POST "likely
creates", so ``POST /v1/customers/{customer_id}/churn`` with a random id (a 404) was a start
while ``POST /v1/customers`` was not (it reads ``external_ids`` as a reference to an "External"
resource nobody creates). Operations our links feed are reached through them instead, so the
budget goes to real sequences (register -> update -> purchase -> refund -> profile -> erase).
"""

from __future__ import annotations

from typing import Any

from schemathesis.specs.openapi import stateful

from api.http.links import STARTS

_classify = stateful.classify_root_transitions
FIRST = {f"{method} {path}" for method, path in STARTS}


def classify_root_transitions(operations: Any, transitions: Any, graph: Any) -> Any:
    """schemathesis' classification, with :data:`FIRST` as starts and not the operations
    the document's own links feed (inferred links do not count)."""
    roots = _classify(operations, transitions, graph)
    known = {operation.label for operation in operations}
    assert known >= FIRST, FIRST - known  # a start the served document lacks
    fed = {
        label
        for label, links in transitions.operations.items()
        if any(not link.is_inferred for link in links.incoming)
    }
    roots.reliable = (roots.reliable - fed) | FIRST
    return roots


stateful.classify_root_transitions = classify_root_transitions
