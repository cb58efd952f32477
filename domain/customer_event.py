"""The base of every customer event: its personal fields and whose key seals them."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from domain.event_base import LoggedEvent
from domain.personal import Personal

if TYPE_CHECKING:
    from domain.customer import Customer


class CustomerEvent(LoggedEvent):
    """Base of every customer event.

    Fields holding personal data are annotated with their :class:`domain.personal.Personal`
    shape; ``PERSONAL`` (``{field: shape}``) is derived from those markers: the fields are
    stored encrypted with the customer's own key, and read as
    :func:`domain.personal.redacted` once the customer is erased. An event whose personal data
    belongs to another person names, in its field ``KEY_OWNER``, whose key seals it (see
    :func:`key_owner`), so erasing that person reaches this copy too.
    """

    PERSONAL: ClassVar[dict[str, Personal]] = {}
    KEY_OWNER: ClassVar[str | None] = None

    def apply(self, aggregate: Customer) -> None:  # pragma: no cover - every subclass overrides
        raise NotImplementedError
