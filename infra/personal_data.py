"""Field-level encryption of personal data, each customer with their own key (AES-256-GCM).

In the stored form of an event, the personal fields (``CustomerEvent.PERSONAL``, derived from
the :class:`domain.personal.Personal` markers on the event's fields; inside customer
snapshots, ``Customer.PERSONAL``) that hold a value are replaced by ONE token under
``"_sealed"``: ``"v1." + base64url(nonce ‖ AES-GCM(key, transcoded {field: value}))``, with
associated data ``clientele.pii.v1 ‖ customer id ‖ version ‖ kind`` binding it to its event
(kind = the event type, or ``snapshot``). The key is the customer's, or, for data a merge
moved from another person, that person's (:func:`domain.personal.key_owner`, named in clear in
the event), so erasing them makes every copy unreadable. Everything else stays clear, so
analytics survive erasure. Envelopes carry the token unchanged (``sealed``); trusted consumers
open it with :meth:`PersonalData.open_envelope` through the key store. Once a key is shredded,
the personal fields it sealed read as :func:`domain.personal.redacted` (null, or ``{}`` for maps).
"""

from __future__ import annotations

import base64
import os
from collections.abc import Collection, Mapping, Sequence
from functools import lru_cache
from typing import Any, TypeGuard
from uuid import UUID

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from eventsourcing.domain import DomainEventProtocol, Snapshot
from eventsourcing.persistence import Mapper, StoredEvent, Transcoder
from eventsourcing.utils import get_topic

from domain.customer import Customer
from domain.errors import EventTooLarge
from domain.event_base import MAX_EVENT_BYTES
from domain.events import EVENT_TYPES, CustomerEvent, Erased
from domain.personal import Personal, key_owner, redacted
from infra.data_keys import NONCE_BYTES, DataKeys
from infra.envelope import SEALED, Envelope, plain

TOKEN_PREFIX = "v1."
CUSTOMER_TOPIC = get_topic(Customer)
SNAPSHOT_KIND = "snapshot"


class SealBroken(ValueError):
    """A sealed token that does not decrypt under its customer's key (altered or misplaced)."""


def _has_value(value: Any) -> bool:
    return value not in (None, {}, [], "")


def has_personal_data(event: object) -> TypeGuard[CustomerEvent]:
    """Whether storing ``event`` needs a data key (its :func:`key_owner`'s)."""
    return isinstance(event, CustomerEvent) and any(
        _has_value(getattr(event, f, None)) for f in event.PERSONAL
    )


def shredded(event_type: str, data: Mapping[str, Any]) -> dict[str, Any]:
    """An opened envelope's ``data`` as it reads once its customer's key is shredded.

    The personal fields of an event are sealed together when any of them holds a value, and
    then all read as :func:`domain.personal.redacted`; otherwise nothing was sealed and the
    stored values stay. Read models use this to turn what they kept from an event into what
    a rebuild after the erasure reads.
    """
    fields = EVENT_TYPES[event_type].PERSONAL
    if not any(_has_value(data.get(f)) for f in fields):
        return dict(data)
    return {**data, **plain({f: redacted(shape) for f, shape in fields.items()})}


@lru_cache(maxsize=4096)
def _cipher(key: bytes) -> AESGCM:
    """AES-GCM set up for one data key (its key schedule is worth keeping)."""
    return AESGCM(key)


def new_nonce() -> bytes:
    """A fresh AES-GCM nonce for one seal (random: a key seals many tokens)."""
    return os.urandom(NONCE_BYTES)


def _context(customer_id: UUID, version: int, kind: str) -> bytes:
    return f"clientele.pii.v1\x00{customer_id}\x00{version}\x00{kind}".encode()


class PersonalData:
    """Seals and opens personal fields with customers' data keys (``keys`` set by the store)."""

    keys: DataKeys

    def __init__(self, transcoder: Transcoder) -> None:
        self.transcoder = transcoder

    def seal(
        self,
        doc: dict[str, Any],
        fields: Collection[str],
        customer_id: UUID,
        version: int,
        kind: str,
        *,
        owner: UUID | None = None,
    ) -> None:
        """Move the personal ``fields`` of ``doc`` into one sealed token (last in ``doc``),
        under the key of ``owner`` (default: the customer), when one of them holds a value;
        else leave ``doc`` as it is."""
        secret = {f: doc[f] for f in fields if f in doc and _has_value(doc[f])}
        if not secret:
            return
        for f in fields:
            doc.pop(f, None)
        key = self.keys.for_writing_one((owner or customer_id).hex)
        nonce = new_nonce()
        ciphertext = _cipher(key).encrypt(
            nonce, self.transcoder.encode(secret), _context(customer_id, version, kind)
        )
        doc[SEALED] = TOKEN_PREFIX + base64.urlsafe_b64encode(nonce + ciphertext).decode()

    def reveal(
        self,
        token: str,
        fields: Mapping[str, Personal],
        customer_id: UUID,
        version: int,
        kind: str,
        *,
        owner: UUID | None = None,
    ) -> dict[str, Any]:
        """The personal fields inside ``token`` (all ``fields``, redacted once the key of
        ``owner``, by default the customer, is shredded)."""
        values = {f: redacted(shape) for f, shape in fields.items()}
        key = self.keys.for_reading((owner or customer_id).hex)
        if key is None:
            return values
        try:
            raw = base64.urlsafe_b64decode(token.removeprefix(TOKEN_PREFIX))
            opened = _cipher(key).decrypt(
                raw[:NONCE_BYTES], raw[NONCE_BYTES:], _context(customer_id, version, kind)
            )
        except (InvalidTag, ValueError) as error:
            msg = f"sealed data of {customer_id} version {version} does not open: {error!r}"
            raise SealBroken(msg) from None
        values.update(self.transcoder.decode(opened))
        return values

    def open_envelope(self, envelope: Envelope) -> Envelope:
        """The envelope with its personal fields in ``data`` (for trusted consumers); one with
        nothing sealed that is no erasure is returned as it is. An erasure's makes this process
        forget the erased person's data key (shredded with it): what the log holds after it
        reads as redacted, whoever erased them."""
        if envelope.type == Erased.TYPE:
            self.keys.forget([envelope.customer_id.hex])
        if envelope.sealed is None:
            return envelope
        fields = EVENT_TYPES[envelope.type].PERSONAL
        values = self.reveal(
            envelope.sealed,
            fields,
            envelope.customer_id,
            envelope.version,
            envelope.type,
            owner=envelope_key_owner(envelope),
        )
        return envelope.opened({**envelope.data, **plain(values)})

    def open_envelopes(self, envelopes: Sequence[Envelope]) -> list[Envelope]:
        """Open a batch (the keys are fetched together)."""
        self.keys.preload(envelope_key_owner(e).hex for e in envelopes if e.sealed is not None)
        return [self.open_envelope(e) for e in envelopes]


def needs_opening(envelope: Envelope) -> bool:
    """Whether :meth:`PersonalData.open_envelope` does anything with ``envelope``: it holds
    sealed data, or it is an erasure (whose opening forgets the erased person's key)."""
    return envelope.sealed is not None or envelope.type == Erased.TYPE


def envelope_key_owner(envelope: Envelope) -> UUID:
    """Whose key seals an envelope's personal data (see :func:`domain.personal.key_owner`)."""
    field = EVENT_TYPES[envelope.type].KEY_OWNER
    owner = envelope.data.get(field) if field else None
    if not isinstance(owner, str):
        return envelope.customer_id
    try:
        return UUID(owner)
    except ValueError:  # only a forged or damaged envelope names no customer here
        raise SealBroken(f"{field} {owner!r} of a sealed envelope is not a customer id") from None


class PersonalDataMapper(Mapper[UUID]):
    """eventsourcing mapper that seals personal fields on the way in and opens them on the way
    out (:meth:`to_sealed_event` leaves them sealed, for publishing and export)."""

    def __init__(self, transcoder: Transcoder, personal: PersonalData) -> None:
        super().__init__(transcoder)
        self.personal = personal

    def to_stored_event(self, domain_event: DomainEventProtocol[UUID]) -> StoredEvent:
        """The stored form; a customer event above :data:`MAX_EVENT_BYTES` is refused
        (:class:`EventTooLarge`) before anything is written: its bytes are measured here,
        where they are made anyway.

        eventsourcing's ``Mapper.to_stored_event`` in one pass (its bytes exactly: the event's
        fields in their order less the id and version, the sealed token last, then
        ``class_version`` when above 1): one copy of the event's fields, sealed in place,
        where sealing through the library copied them twice and built a second event."""
        cls = type(domain_event)
        doc = dict(vars(domain_event))
        customer_id, version = doc.pop("originator_id"), doc.pop("originator_version")
        if isinstance(domain_event, CustomerEvent):
            owner = key_owner(domain_event)
            self.personal.seal(
                doc, domain_event.PERSONAL, customer_id, version, domain_event.TYPE, owner=owner
            )
        elif isinstance(domain_event, Snapshot) and domain_event.topic == CUSTOMER_TOPIC:
            doc["state"] = dict(doc["state"])
            self.personal.seal(doc["state"], Customer.PERSONAL, customer_id, version, SNAPSHOT_KIND)
        class_version = getattr(cls, "class_version", 1)
        if class_version > 1:
            doc["class_version"] = class_version
        state = self.transcoder.encode(doc)
        if self.compressor:
            state = self.compressor.compress(state)
        if self.cipher:
            state = self.cipher.encrypt(state)
        if len(state) > MAX_EVENT_BYTES and isinstance(domain_event, CustomerEvent):
            raise EventTooLarge(
                customer_id, version, domain_event.TYPE, len(state), MAX_EVENT_BYTES
            )
        return StoredEvent(customer_id, version, get_topic(cls), state)

    def to_sealed_event(self, stored_event: StoredEvent) -> DomainEventProtocol[UUID]:
        """The domain event with its personal fields still sealed (under ``_sealed``)."""
        return super().to_domain_event(stored_event)

    def to_domain_event(self, stored_event: StoredEvent) -> DomainEventProtocol[UUID]:
        event = super().to_domain_event(stored_event)
        doc = vars(event)
        if isinstance(event, CustomerEvent):
            token = doc.pop(SEALED, None)
            if token is not None:
                doc.update(
                    self.personal.reveal(
                        token,
                        event.PERSONAL,
                        event.originator_id,
                        event.originator_version,
                        event.TYPE,
                        owner=key_owner(event),
                    )
                )
        elif isinstance(event, Snapshot) and SEALED in doc["state"]:
            state = doc["state"]
            state.update(
                self.personal.reveal(
                    state.pop(SEALED),
                    Customer.PERSONAL,
                    event.originator_id,
                    event.originator_version,
                    SNAPSHOT_KIND,
                )
            )
        return event
