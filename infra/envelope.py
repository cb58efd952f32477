"""The event envelope of the Kafka contract (docs/architecture.md, "Contracts: event
envelope"), encoded with orjson.

An envelope is the public, self-describing form of one stored customer event. Its ``id`` is
derived from (customer id, version), so the same event always has the same id no matter how
often it is published or rebuilt. Schema: ``infra/schemas/event-envelope.schema.json``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from hashlib import sha1
from pathlib import Path
from typing import Any, Generic, TypeVar, overload
from uuid import UUID, uuid5

import orjson

from domain.event_base import LoggedEvent
from domain.events import EVENT_TYPES
from infra.json_values import NotJsonObject, json_object
from infra.transcoder import iso_text

SCHEMA_VERSION = 1
SCHEMA_PATH = Path(__file__).parent / "schemas" / "event-envelope.schema.json"
EVENT_ID_NAMESPACE = UUID("6f1c1a8e-3b0e-5d5c-9a53-2f6a6c1e7d10")
_NAMESPACE_BYTES = EVENT_ID_NAMESPACE.bytes
SEALED = "_sealed"  # where a stored event keeps its encrypted personal fields


class EnvelopeError(ValueError):
    """Bytes that are not a valid event envelope (a poison message)."""


def event_id(customer_id: UUID, version: int) -> UUID:
    """Deterministic event id: one (customer, version) is one event, forever."""
    return uuid5(EVENT_ID_NAMESPACE, f"{customer_id}/{version}")


def event_id_text(customer_key: str, version: int) -> str:
    """``str(event_id(customer_id, version))`` from the customer id as text, without building
    UUID objects (a third of the time): uuid5 is SHA-1 of namespace and name, its first 16
    bytes with the RFC 4122 version (5) and variant (10xx) bits set, here on the hex digits:
    digit 12 becomes 5, digit 16 keeps its low two bits under 8."""
    h = sha1(_NAMESPACE_BYTES + f"{customer_key}/{version}".encode()).hexdigest()
    variant = _VARIANT[h[16]]
    return f"{h[:8]}-{h[8:12]}-5{h[13:16]}-{variant}{h[17:20]}-{h[20:32]}"


_VARIANT = {digit: "89ab"[int(digit, 16) & 3] for digit in "0123456789abcdef"}


def json_default(value: Any) -> Any:
    """orjson's ``default`` for event data: a ``Decimal`` as its string; ``TypeError`` for
    anything else orjson cannot write."""
    if isinstance(value, Decimal):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


_SCALARS = (str, int, bool, float, type(None))


def plain(values: dict[str, Any]) -> dict[str, Any]:
    """``values`` as plain JSON types (decimals as strings, datetimes as RFC 3339)."""
    if all(type(value) in _SCALARS for value in values.values()):
        return dict(values)  # already plain: the common case, no round trip
    loaded: dict[str, Any] = orjson.loads(orjson.dumps(values, default=json_default))
    return loaded


T = TypeVar("T")


class _Memo(Generic[T]):
    """``functools.cached_property`` without its lock: Python 3.11 takes an ``RLock`` on every
    first read, which doubled the cost of formatting an envelope's time once (~1 µs more per
    envelope and property, for every reader of the log). The value is computed on first read
    and kept in the instance's ``__dict__``, which later reads find first."""

    def __init__(self, compute: Callable[[Any], T]) -> None:
        self.compute = compute
        self.name = compute.__name__
        self.__doc__ = compute.__doc__

    @overload
    def __get__(self, instance: None, owner: type | None = None) -> _Memo[T]: ...
    @overload
    def __get__(self, instance: object, owner: type | None = None) -> T: ...
    def __get__(self, instance: object | None, owner: type | None = None) -> T | _Memo[T]:
        if instance is None:
            return self
        value: T = self.compute(instance)
        instance.__dict__[self.name] = value
        return value


@dataclass(frozen=True, init=False)
class Envelope:
    """One customer event as every consumer sees it.

    Frozen, compared and printed as the dataclass it is; only its constructor is written out:
    the generated one of a frozen dataclass sets each of the 15 fields through
    ``object.__setattr__`` (half of its 2 µs, paid per event by every reader of the log:
    a thousand times per time-travel request). Same parameters, same defaults."""

    type: str
    schema_version: int
    customer_id: UUID
    version: int
    position: int
    occurred_at: datetime
    recorded_at: datetime
    actor: str
    correlation_id: str
    causation_id: str | None
    data: dict[str, Any]
    prev_hash: str | None = None
    hash: str | None = None
    sealed: str | None = None
    headers: dict[str, str] = field(default_factory=dict, compare=False)

    def __init__(  # noqa: PLR0917 - the dataclass's own signature, positions included
        self,
        type: str,
        schema_version: int,
        customer_id: UUID,
        version: int,
        position: int,
        occurred_at: datetime,
        recorded_at: datetime,
        actor: str,
        correlation_id: str,
        causation_id: str | None,
        data: dict[str, Any],
        prev_hash: str | None = None,
        hash: str | None = None,
        sealed: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.__dict__.update(
            type=type,
            schema_version=schema_version,
            customer_id=customer_id,
            version=version,
            position=position,
            occurred_at=occurred_at,
            recorded_at=recorded_at,
            actor=actor,
            correlation_id=correlation_id,
            causation_id=causation_id,
            data=data,
            prev_hash=prev_hash,
            hash=hash,
            sealed=sealed,
            headers={} if headers is None else headers,
        )

    @classmethod
    def stored(  # noqa: PLR0917 - one per field an envelope read from the store has
        cls,
        type: str,
        customer_id: UUID,
        version: int,
        position: int,
        occurred_at: datetime,
        recorded_at: datetime,
        occurred_text: str,
        recorded_text: str,
        actor: str,
        correlation_id: str,
        causation_id: str | None,
        data: dict[str, Any],
        sealed: str | None,
    ) -> Envelope:
        """An envelope read from a stored event whose moments' texts are at hand:
        ``occurred_text`` and ``recorded_text`` MUST be exactly ``isoformat()`` of
        ``occurred_at`` and ``recorded_at`` (:mod:`infra.lean_rows` checks the stored texts
        are); they are kept as :attr:`occurred_text` and :attr:`recorded_text`, which are then
        not formatted again. Equal to the envelope the constructor makes of the same fields
        (no chain, no headers). One dictionary, set once: a time-travel request makes a
        thousand."""
        envelope = object.__new__(cls)
        object.__setattr__(
            envelope,
            "__dict__",
            {
                "type": type,
                "schema_version": SCHEMA_VERSION,
                "customer_id": customer_id,
                "version": version,
                "position": position,
                "occurred_at": occurred_at,
                "recorded_at": recorded_at,
                "actor": actor,
                "correlation_id": correlation_id,
                "causation_id": causation_id,
                "data": data,
                "prev_hash": None,
                "hash": None,
                "sealed": sealed,
                "headers": {},
                "occurred_text": occurred_text,
                "recorded_text": recorded_text,
            },
        )
        return envelope

    def opened(self, data: dict[str, Any]) -> Envelope:
        """This envelope with its personal data opened into ``data`` (``sealed`` None): what
        ``dataclasses.replace(self, data=data, sealed=None)`` makes, with the texts and ids
        formatted so far kept (they do not depend on either field)."""
        envelope = object.__new__(type(self))
        object.__setattr__(envelope, "__dict__", {**self.__dict__, "data": data, "sealed": None})
        return envelope

    @_Memo
    def id(self) -> UUID:
        """The event's id, derived from (customer id, version) when first asked for."""
        return event_id(self.customer_id, self.version)

    @_Memo
    def customer_key(self) -> str:
        """The customer id as text (read-model keys, Kafka keys), formatted once."""
        return str(self.customer_id)

    @_Memo
    def occurred_text(self) -> str:
        """``occurred_at.isoformat()``, formatted once for every read model folding it."""
        return iso_text(self.occurred_at)

    @_Memo
    def recorded_text(self) -> str:
        """``recorded_at.isoformat()``, formatted once for every read model folding it."""
        return iso_text(self.recorded_at)

    @classmethod
    def from_event(
        cls, event: LoggedEvent, position: int, chain: tuple[str, str] | None = None
    ) -> Envelope:
        """Wrap a domain event recorded at ``position``; data is made JSON-plain.

        Segment events (:mod:`domain.segment`) travel in the same shape inside our processes,
        their aggregate's id in ``customer_id``; they are never published.

        An event read sealed (``PersonalDataMapper.to_sealed_event``) keeps its personal
        fields out of ``data``, encrypted in ``sealed``. ``chain`` is its (prev_hash, hash).
        """
        data = plain(event.data())
        sealed = data.pop(SEALED, None)
        return cls(
            type=event.TYPE,
            schema_version=SCHEMA_VERSION,
            customer_id=event.originator_id,
            version=event.originator_version,
            position=position,
            occurred_at=event.occurred_at,
            recorded_at=event.timestamp,
            actor=event.actor,
            correlation_id=event.correlation_id,
            causation_id=event.causation_id,
            data=data,
            prev_hash=chain[0] if chain else None,
            hash=chain[1] if chain else None,
            sealed=sealed,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": str(self.id),
            "type": self.type,
            "schema_version": self.schema_version,
            "customer_id": str(self.customer_id),
            "version": self.version,
            "position": self.position,
            "occurred_at": self.occurred_text,
            "recorded_at": self.recorded_text,
            "actor": self.actor,
            "correlation_id": self.correlation_id,
            "causation_id": self.causation_id,
            "data": self.data,
            "prev_hash": self.prev_hash,
            "hash": self.hash,
            "sealed": self.sealed,
        }

    def to_bytes(self) -> bytes:
        return orjson.dumps(self.to_dict())

    def kafka_headers(self) -> list[tuple[str, bytes]]:
        """Headers of the contract: type, schema_version, correlation_id."""
        return [
            ("type", self.type.encode()),
            ("schema_version", str(self.schema_version).encode()),
            ("correlation_id", self.correlation_id.encode()),
        ]

    @classmethod
    def from_bytes(cls, raw: bytes | None) -> Envelope:
        """Decode and check an envelope; anything malformed (no value at all included) is an
        :class:`EnvelopeError`."""
        try:
            doc = json_object(raw, "an envelope")
        except NotJsonObject as error:  # the specific reason: encoding, truncation, type
            raise EnvelopeError(str(error)) from None
        return cls.from_dict(doc)

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> Envelope:
        """Check ``doc`` against the envelope schema's types (strictly: no ``"1"`` for 1,
        no ``true`` for an integer, no time without an offset); :class:`EnvelopeError` naming
        the field if not (``<field> is missing``, ``<field> must be …``)."""
        try:
            kind = _text(doc["type"], "type")
            if kind not in EVENT_TYPES:
                raise EnvelopeError(f"unknown event type {kind!r}")
            if not isinstance(doc["data"], dict):
                raise EnvelopeError("data must be an object")
            if _integer(doc["schema_version"], "schema_version") != SCHEMA_VERSION:
                raise EnvelopeError(f"schema_version must be {SCHEMA_VERSION}")
            customer_id = _uuid(doc["customer_id"], "customer_id")
            _uuid(doc["id"], "id")  # well-formed; the value is derived from (customer_id, version)
            return cls(
                type=kind,
                schema_version=SCHEMA_VERSION,
                customer_id=customer_id,
                version=_integer(doc["version"], "version"),
                position=_integer(doc["position"], "position"),
                occurred_at=_moment(doc["occurred_at"], "occurred_at"),
                recorded_at=_moment(doc["recorded_at"], "recorded_at"),
                actor=_text(doc["actor"], "actor"),
                correlation_id=_text(doc["correlation_id"], "correlation_id"),
                causation_id=_optional_text(doc.get("causation_id"), "causation_id"),
                data=doc["data"],
                prev_hash=_optional_text(doc.get("prev_hash"), "prev_hash"),
                hash=_optional_text(doc.get("hash"), "hash"),
                sealed=_optional_text(doc.get("sealed"), "sealed"),
            )
        except KeyError as missing:
            raise EnvelopeError(f"{missing.args[0]} is missing") from None
        except EnvelopeError:
            raise
        except (TypeError, ValueError, AttributeError) as error:  # none known: a safety net
            raise EnvelopeError(f"malformed envelope: {error!r}") from None


def _integer(value: Any, name: str) -> int:
    if type(value) is not int or value < 1:
        raise EnvelopeError(f"{name} must be a positive integer")
    return value


def _text(value: Any, name: str) -> str:
    if not isinstance(value, str):
        raise EnvelopeError(f"{name} must be a string")
    return value


def _moment(value: Any, name: str) -> datetime:
    text = _text(value, name)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        moment = None
    if moment is None or moment.utcoffset() is None:
        raise EnvelopeError(f"{name} must be a date-time with an offset")
    return moment


def _uuid(value: Any, name: str) -> UUID:
    text = _text(value, name)
    try:
        return UUID(text)
    except ValueError:
        raise EnvelopeError(f"{name} must be a UUID") from None


def _optional_text(value: Any, name: str) -> str | None:
    if value is not None and not isinstance(value, str):
        raise EnvelopeError(f"{name} must be a string or null")
    return value
