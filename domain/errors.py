"""Domain errors: every rejection the model can give, each with a stable code.

The code is what the edges (HTTP problem ``type``, Kafka command results, CLI) expose; the
message is for people. Errors never carry stack traces across an edge.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID


class DomainError(Exception):
    """Base of every rejection decided by the domain or the command side."""

    code = "domain-error"

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form for problem documents and command results."""
        return {"code": self.code, "message": self.message, **self.details}


def displayable(text: str) -> str:
    """``text`` safe to encode as UTF-8 (unpaired surrogates escaped), for error documents
    that name a field taken from the input."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


class InvalidInput(DomainError):
    """A field failed validation or normalisation; ``reason`` is the message without the field."""

    code = "validation"

    def __init__(self, field: str, message: str) -> None:
        field, message = displayable(field), displayable(message)
        super().__init__(f"{field}: {message}", field=field)
        self.field = field
        self.reason = message


class CustomerNotFound(DomainError):
    code = "not-found"

    def __init__(self, customer_id: UUID) -> None:
        super().__init__(f"customer {customer_id} not found", customer_id=str(customer_id))


class CustomerExists(DomainError):
    """A registration named an id that is already taken."""

    code = "customer-exists"


class CustomerErased(DomainError):
    """The customer was erased; nothing more can happen to them."""

    code = "gone-erased"

    def __init__(self, customer_id: UUID) -> None:
        super().__init__(f"customer {customer_id} was erased", customer_id=str(customer_id))


class CustomerMerged(DomainError):
    """The customer was merged into a survivor; commands go to the survivor."""

    code = "gone-merged"

    def __init__(self, customer_id: UUID, survivor_id: UUID) -> None:
        super().__init__(
            f"customer {customer_id} was merged into {survivor_id}",
            customer_id=str(customer_id),
            survivor_id=str(survivor_id),
        )
        self.customer_id = customer_id
        self.survivor_id = survivor_id


class InvalidTransition(DomainError):
    """The command is not allowed in the customer's current status or stage."""

    code = "invalid-transition"


class InsufficientPoints(InvalidTransition):
    """A redemption asks for more points than the customer holds."""

    code = "insufficient-points"

    def __init__(self, customer_id: UUID, requested: int, balance: int) -> None:
        super().__init__(
            f"cannot redeem {requested} points, balance is {balance}",
            customer_id=str(customer_id),
            requested=requested,
            balance=balance,
        )


class PurchaseConflict(DomainError):
    """The order id was already recorded with a different amount or currency."""

    code = "purchase-conflict"


class EmailTaken(DomainError):
    """The normalised email belongs to another live customer."""

    code = "email-taken"

    def __init__(self, email: str, existing_customer_id: UUID) -> None:
        super().__init__(
            f"email {email} already belongs to customer {existing_customer_id}",
            existing_customer_id=str(existing_customer_id),
        )
        self.existing_customer_id = existing_customer_id


class ExternalIdTaken(DomainError):
    """The external id belongs to another customer (the one that answers for it: the final
    survivor, if its holder was merged)."""

    code = "external-id-taken"

    def __init__(self, system: str, external_id: str, existing_customer_id: UUID) -> None:
        super().__init__(
            f"{system} id {external_id} already belongs to customer {existing_customer_id}",
            field=f"external_ids.{system}",
            existing_customer_id=str(existing_customer_id),
        )
        self.existing_customer_id = existing_customer_id


class ExternalIdsDisagree(DomainError):
    """A registration's external ids belong to different existing customers."""

    code = "external-id-conflict"

    def __init__(self, holders: dict[str, UUID]) -> None:
        named = ", ".join(f"{ref} -> {customer}" for ref, customer in sorted(holders.items()))
        super().__init__(
            f"the external ids name different customers: {named}",
            field="external_ids",
            customers={ref: str(customer) for ref, customer in sorted(holders.items())},
        )


class CustomerRefNotFound(DomainError):
    """No customer holds the external id a ``customer_ref`` names."""

    code = "not-found"

    def __init__(self, system: str, external_id: str) -> None:
        super().__init__(
            f"no customer has {system} id {external_id}",
            customer_ref={"system": system, "id": external_id},
        )


class VersionConflict(DomainError):
    """Optimistic concurrency: the expected version is not the current one."""

    code = "version-conflict"

    def __init__(self, customer_id: UUID, expected: int, actual: int) -> None:
        super().__init__(
            f"customer {customer_id} is at version {actual}, not {expected}",
            customer_id=str(customer_id),
            expected_version=expected,
            actual_version=actual,
        )


class ConcurrentWrite(DomainError):
    """Another writer committed first and retries ran out."""

    code = "concurrent-write"


class IdempotencyKeyReused(DomainError):
    """The idempotency key was first used with a different request."""

    code = "idempotency-key-reused"

    def __init__(self, key: str) -> None:
        super().__init__(f"idempotency key {key!r} was already used for a different request")


class LimitExceeded(DomainError):
    code = "limit-exceeded"


class EventTooLarge(DomainError):
    """A command would record an event above the store's bound (nothing is recorded)."""

    code = "event-too-large"

    def __init__(
        self, customer_id: UUID, version: int, event_type: str, size: int, limit: int
    ) -> None:
        super().__init__(
            f"{event_type} of customer {customer_id} would take {size} bytes; "
            f"events are limited to {limit} bytes",
            customer_id=str(customer_id),
            event_type=event_type,
            size=size,
            limit=limit,
        )
        self.customer_id = customer_id
        self.version = version


class NoConsent(DomainError):
    """The customer has not consented to the purpose (a campaign leaves them out)."""

    code = "no-consent"


class FrequencyCapped(DomainError):
    """The customer has had as many marketing touches in the window as the cap allows."""

    code = "frequency-capped"


class ChannelInvalid(DomainError):
    """The campaign's channel hard-bounced for the customer (a launch leaves them out)."""

    code = "channel-invalid"
