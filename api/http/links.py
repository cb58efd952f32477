"""OpenAPI links (``responses.<status>.links``): which operation may follow which, and where its
ids come from, so clients and stateful testers (schemathesis) can walk real sequences such as
register → update → purchase → refund → profile → history → erase.

Documentation only: links add to the served document, they change no path, parameter or shape.
:func:`document_links` resolves each ``(method, path)`` below to the target's ``operationId``
and refuses a link to an operation or parameter the document does not have.
"""

from __future__ import annotations

from typing import Any

Operation = tuple[str, str]
"""``(METHOD, path)`` as served, e.g. ``("GET", "/v1/customers/{customer_id}")``."""

CUSTOMER = "/v1/customers/{customer_id}"
REGISTER: Operation = ("POST", "/v1/customers")
BATCH: Operation = ("POST", "/v1/commands:batch")
GET: Operation = ("GET", CUSTOMER)
UPDATE: Operation = ("PATCH", CUSTOMER)
ERASE: Operation = ("DELETE", CUSTOMER)
CONTACT: Operation = ("POST", f"{CUSTOMER}/contacts")
TAG: Operation = ("PUT", f"{CUSTOMER}/tags/{{tag}}")
UNTAG: Operation = ("DELETE", f"{CUSTOMER}/tags/{{tag}}")
PURCHASE: Operation = ("POST", f"{CUSTOMER}/purchases")
REFUND: Operation = ("POST", f"{CUSTOMER}/refunds")
REDEEM: Operation = ("POST", f"{CUSTOMER}/points:redeem")
FEEDBACK: Operation = ("POST", f"{CUSTOMER}/feedback")
CONSENT: Operation = ("PUT", f"{CUSTOMER}/consents/{{purpose}}")
LIFECYCLE: Operation = ("POST", f"{CUSTOMER}/lifecycle")
CHURN: Operation = ("POST", f"{CUSTOMER}/churn")
REACTIVATE: Operation = ("POST", f"{CUSTOMER}/reactivate")
MERGE: Operation = ("POST", f"{CUSTOMER}/merge")
UNMERGE: Operation = ("POST", f"{CUSTOMER}/unmerge")
LOYALTY: Operation = ("GET", f"{CUSTOMER}/loyalty")
RFM: Operation = ("GET", f"{CUSTOMER}/rfm")
HISTORY: Operation = ("GET", f"{CUSTOMER}/history")
CONSENT_HISTORY: Operation = ("GET", f"{CUSTOMER}/consents/history")
SEGMENT = "/v1/segments/{segment_id}"
PUT_SEGMENT: Operation = ("PUT", SEGMENT)
POST_SEGMENT: Operation = ("POST", SEGMENT)
MEMBERS: Operation = ("GET", f"{SEGMENT}/members")
POLICY = "/v1/policies/{name}"
GET_POLICY: Operation = ("GET", POLICY)
PUT_POLICY: Operation = ("PUT", POLICY)

STARTS: tuple[Operation, ...] = (REGISTER, BATCH, PUT_SEGMENT, PUT_POLICY)
"""Operations that create what the links pass on: where a walk through the API starts."""
REGISTERED = ("201", "200")
"""A registration's answers: a new customer, or the one already holding its external id."""

WRITTEN_ID = "$response.body#/customer_id"
"""Every write answers ``{customer_id, version, position}`` with ``ETag: "<version>"``."""
WRITTEN = {"path.customer_id": WRITTEN_ID}
WRITTEN_VERSION = {**WRITTEN, "header.if-match": "$response.header.ETag"}
SAME_CUSTOMER = {"path.customer_id": "$request.path.customer_id"}

LINKS: dict[tuple[Operation, str], dict[Operation, dict[str, str]]] = {
    (UPDATE, "200"): {
        GET: WRITTEN,
        HISTORY: WRITTEN,
        PURCHASE: WRITTEN_VERSION,
        ERASE: WRITTEN_VERSION,
    },
    (CONTACT, "200"): {GET: WRITTEN, UPDATE: WRITTEN_VERSION},
    (TAG, "200"): {UNTAG: {**WRITTEN_VERSION, "path.tag": "$request.path.tag"}, GET: WRITTEN},
    (UNTAG, "200"): {GET: WRITTEN},
    (PURCHASE, "200"): {
        REFUND: {**WRITTEN_VERSION, "body.order_id": "$request.body#/order_id"},
        GET: WRITTEN,
        LOYALTY: WRITTEN,
        RFM: WRITTEN,
    },
    (REFUND, "200"): {GET: WRITTEN, HISTORY: WRITTEN},
    (REDEEM, "200"): {LOYALTY: WRITTEN},
    (FEEDBACK, "200"): {GET: WRITTEN},
    (CONSENT, "200"): {CONSENT_HISTORY: WRITTEN, GET: WRITTEN},
    (LIFECYCLE, "200"): {GET: WRITTEN},
    (CHURN, "200"): {REACTIVATE: WRITTEN_VERSION, GET: WRITTEN},
    (REACTIVATE, "200"): {GET: WRITTEN},
    (MERGE, "200"): {
        UNMERGE: {**WRITTEN_VERSION, "body.duplicate_id": "$request.body#/duplicate_id"},
        GET: WRITTEN,
    },
    (UNMERGE, "200"): {GET: WRITTEN},
    (ERASE, "200"): {GET: WRITTEN, HISTORY: WRITTEN},
    (BATCH, "200"): {
        GET: {"path.customer_id": "$response.body#/results/0/customer_id"},
        HISTORY: {"path.customer_id": "$response.body#/results/0/customer_id"},
    },
    (PUT_SEGMENT, "200"): {
        MEMBERS: {"path.segment_id": "$request.path.segment_id"},
        POST_SEGMENT: {"path.segment_id": "$request.path.segment_id"},
    },
    (POST_SEGMENT, "200"): {MEMBERS: {"path.segment_id": "$request.path.segment_id"}},
    (PUT_POLICY, "200"): {
        GET_POLICY: {"path.name": "$request.path.name"},
        PUT_POLICY: {"path.name": "$request.path.name", "header.if-match": "$response.header.ETag"},
    },
    (GET_POLICY, "200"): {
        PUT_POLICY: {"path.name": "$request.path.name", "header.if-match": "$response.header.ETag"}
    },
    (GET, "200"): {UPDATE: {**SAME_CUSTOMER, "header.if-match": "$response.header.ETag"}},
}
"""``(source operation, status) -> {target operation: {parameter: runtime expression}}``: what
may follow a write or a definition. Writes that follow a write send its ``ETag`` as
``If-Match`` (the version it left). A registration's links are :func:`registration_links`."""


def registration_links(openapi: dict[str, Any]) -> dict[Operation, dict[str, str]]:
    """A registration leads to every operation on one customer in ``openapi`` (new routes
    included): its ``customer_id`` in the path, and its ``ETag`` as ``If-Match`` where the
    operation takes one; other path parameters (a tag, a purpose) are the caller's."""
    targets: dict[Operation, dict[str, str]] = {}
    for path, item in openapi["paths"].items():
        if not path.startswith(CUSTOMER):
            continue
        for method, operation in item.items():
            names = _parameter_names(operation)
            if "path.customer_id" in names:
                targets[(method.upper(), path)] = (
                    WRITTEN_VERSION if "header.if-match" in names else WRITTEN
                )
    return targets


def _link_name(method: str, path: str) -> str:
    """``PATCH /v1/customers/{customer_id}/tags/{tag}`` -> ``PatchCustomersTags``."""
    words = [w for w in path.split("/")[2:] if w and not w.startswith("{")]
    camel = "".join(part.capitalize() for w in words for part in w.replace(":", "_").split("_"))
    return method.capitalize() + camel


def _parameter_names(operation: dict[str, Any]) -> set[str]:
    return {f"{p['in']}.{p['name']}" for p in operation.get("parameters", [])}


def document_links(openapi: dict[str, Any]) -> dict[str, Any]:
    """Add :func:`registration_links` and :data:`LINKS` to ``openapi`` (in place, also
    returned).

    Raises ``KeyError`` naming a link whose source, status, target or path/header parameter
    the document lacks (a renamed route must take its links along)."""
    paths = openapi["paths"]
    registration = registration_links(openapi)
    every = {**{(REGISTER, status): registration for status in REGISTERED}, **LINKS}
    for ((method, path), status), targets in every.items():
        response = paths[path][method.lower()]["responses"][status]
        links = response.setdefault("links", {})
        for (target_method, target_path), parameters in targets.items():
            target = paths[target_path][target_method.lower()]
            known = _parameter_names(target)
            for name in parameters:
                location = name.split(".", 1)[0]
                if location != "body" and name not in known:
                    raise KeyError(f"{target_method} {target_path} has no parameter {name}")
            link: dict[str, Any] = {
                "operationId": target["operationId"],
                "parameters": {k: v for k, v in parameters.items() if not k.startswith("body.")},
            }
            body = {k[5:]: v for k, v in parameters.items() if k.startswith("body.")}
            if body:
                link["requestBody"] = body
            links[_link_name(target_method, target_path)] = link
    return openapi
