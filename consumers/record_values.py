"""Opening the records of ``customer.events``: each value an :class:`Envelope` with its sealed
personal data opened, or the reason it is poison (dead-lettered, never applied)."""

from __future__ import annotations

from collections.abc import Sequence

from infra.envelope import Envelope, EnvelopeError
from infra.personal_data import PersonalData, SealBroken

POISON = (EnvelopeError, SealBroken)
"""What :func:`open_values` finds in a poison record: it is dead-lettered, never applied."""


def open_values(
    values: Sequence[bytes | None], personal: PersonalData
) -> list[Envelope | EnvelopeError | SealBroken]:
    """Each record value as an opened :class:`Envelope`, or the :data:`POISON` error saying why
    it is not one (not JSON, not an envelope, sealed data that does not open). Raises only
    when the key store cannot be read (the batch is then retried)."""
    decoded: list[Envelope | EnvelopeError | SealBroken] = []
    for value in values:
        try:
            decoded.append(Envelope.from_bytes(value))
        except EnvelopeError as error:
            decoded.append(error)
    personal.keys.preload(
        e.customer_id.hex for e in decoded if isinstance(e, Envelope) and e.sealed
    )
    opened: list[Envelope | EnvelopeError | SealBroken] = []
    for item in decoded:
        try:
            opened.append(personal.open_envelope(item) if isinstance(item, Envelope) else item)
        except SealBroken as error:
            opened.append(error)
    return opened
