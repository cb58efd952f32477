"""Rows to commands: the same messages, handlers and checks as every other write.

Re-sending a row never records it twice, and no row needs an idempotency record when it has a
natural key:

* a customer row with an external id registers by it (the same id again answers the same
  customer, no new event); one without (only ``customer_id``, or nothing) gets the customer
  id and idempotency keys derived from the file's digest and the line, as before;
* a purchase is recorded once per order id (the same order again changes nothing). A row
  without ``order_id`` gets a **derived** one: ``auto-`` and 32 hex digits of the SHA-256 of
  the customer (its id, or the system and external id), the instant (UTC, after
  ``--timezone``), the amount (trailing zeros dropped), the currency, and *n*, this row's
  occurrence among the identical rows before it in the file. Two identical rows (the same
  customer buying the same thing twice a day) stay two purchases; importing the file again —
  or a longer export of the same rows in the same order — derives the same ids.

Values are checked as strictly as the batch route checks JSON: a JSON Lines value must be a
string where the batch route wants one (``"12.50"``, not ``12.5``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, tzinfo
from decimal import Decimal
from typing import Any, TypeVar
from uuid import UUID, uuid5

from api.cli.importing.fields import CUSTOMERS, REF_ID, REF_SYSTEM, Kind, read_moment
from api.cli.importing.source import Values
from commands import messages as m
from domain.errors import DomainError, InvalidInput
from domain.external_ids import normalise_ref
from domain.values import MAX_TAGS_PER_CUSTOMER, normalise_currency, normalise_tag, parse_amount

IMPORT_NAMESPACE = UUID("a4d3c1f2-6b7e-5f80-9c1d-2e3f4a5b6c7d")
EXTERNAL_IDS, ATTRIBUTES = "external_ids.", "attributes."
KEPT = 10_000  # distinct dates (and currencies) read once each
Ref = tuple[str, str]
T = TypeVar("T")


@dataclass(slots=True)
class Row:
    """One row's commands, or the problem that refused it before anything was sent."""

    line: int
    commands: tuple[m.Command, ...]
    customer_id: UUID | None = None
    ref: Ref | None = None
    order_id: str | None = None
    problem: DomainError | None = None


def _text(values: Values, name: str) -> str | None:
    value = values.get(name)
    if value is None or isinstance(value, str):
        return value
    raise InvalidInput(name, "must be a string")


def _required(values: Values, name: str) -> str:
    value = _text(values, name)
    if value is None:
        raise InvalidInput(name, "is required")
    return value


def _present(values: Values, name: str) -> Any:
    """A required value as given (its type is checked where it is read)."""
    value = values.get(name)
    if value is None:
        raise InvalidInput(name, "is required")
    return value


def _uuid(values: Values) -> UUID | None:
    text = _text(values, "customer_id")
    if text is None:
        return None
    try:
        return UUID(text.strip())
    except ValueError:
        raise InvalidInput("customer_id", f"{text!r} is not a UUID") from None


def _tags(value: object) -> list[str]:
    """``a;b`` (CSV) or a list of strings (JSON Lines), normalised and checked up front."""
    if value is None:
        return []
    parts = value.split(";") if isinstance(value, str) else value
    if not isinstance(parts, list) or not all(isinstance(part, str) for part in parts):
        raise InvalidInput("tags", "must be ';'-separated text or a list of strings")
    tags = list(dict.fromkeys(normalise_tag(part) for part in parts if part.strip()))
    if len(tags) > MAX_TAGS_PER_CUSTOMER:
        raise InvalidInput("tags", f"at most {MAX_TAGS_PER_CUSTOMER} tags")
    return tags


class Occurrences:
    """How often each derived-order key was seen so far (8 bytes of its digest per key)."""

    def __init__(self) -> None:
        self.seen: set[int] = set()
        self.repeated: dict[int, int] = {}

    def next(self, digest: bytes) -> int:
        """1 for a key's first row, 2 for its second, …"""
        key = int.from_bytes(digest[:8], "big")
        if key not in self.seen:
            self.seen.add(key)
            return 1
        count = self.repeated[key] = self.repeated.get(key, 1) + 1
        return count


def derived_order_id(
    who: str, moment: str, amount: Decimal, currency: str, seen: Occurrences
) -> str:
    """The order id of a row without one (see the module docstring); ``moment``: the instant's
    ISO text (:attr:`Moment.text`), empty without one."""
    key = f"{who}\x1f{moment}\x1f{format(amount.normalize(), 'f')}\x1f{currency}".encode()
    digest = hashlib.sha256(key).digest()
    occurrence = seen.next(digest)
    if occurrence > 1:
        digest = hashlib.sha256(digest + occurrence.to_bytes(8, "big")).digest()
    return "auto-" + digest[:16].hex()


@dataclass(frozen=True, slots=True)
class Moment:
    """A date or time of the file, read: the instant, and its ISO text for derived ids."""

    at: datetime
    text: str


def _keep(kept: dict[Any, Any], key: object, value: T) -> T:
    """Remember ``value`` for ``key``, forgetting everything once ``KEPT`` are held."""
    if len(kept) >= KEPT:
        kept.clear()
    kept[key] = value
    return value


class RowBuilder:
    """Builds the commands of one file's rows, in file order (derived ids count occurrences)."""

    def __init__(self, kind: Kind, digest: str, *, system: str | None, zone: tzinfo) -> None:
        self.digest = digest[:16]  # as in idempotency keys of earlier imports
        self.system = system
        self.zone = zone
        self.occurrences = Occurrences()
        self._moments: dict[str, Moment] = {}  # exports repeat dates: read each once
        self._currencies: dict[str, str] = {}  # and currencies
        self._build: Callable[[int, Values, Ref | None], Row] = (
            self._customer if kind is CUSTOMERS else self._purchase
        )

    def build(self, line: int, values: Values) -> Row:
        """The row's commands, or a :class:`Row` with the problem that refused it."""
        ref: Ref | None = None
        try:
            ref = self._ref(values)
            return self._build(line, values, ref)
        except DomainError as error:
            return Row(line, (), ref=ref, problem=error)

    def _ref(self, values: Values) -> Ref | None:
        """The row's (system, external id) in canonical form, if it names one."""
        external_id = values.get(REF_ID)
        if external_id is None:
            return None
        system = values.get(REF_SYSTEM, self.system)
        if system is None:
            raise InvalidInput(REF_SYSTEM, "is required with an external id (or --system)")
        return normalise_ref(system, external_id, "customer_ref")

    def _moment(self, values: Values) -> Moment | None:
        text = _text(values, "occurred_at")
        if text is None:
            return None
        moment = self._moments.get(text)
        if moment is None:
            at = read_moment(text, self.zone)
            moment = _keep(self._moments, text, Moment(at, at.isoformat()))
        return moment

    def _currency(self, value: object) -> str:
        """:func:`normalise_currency`, once per distinct text."""
        if not isinstance(value, str):
            return normalise_currency(value)
        code = self._currencies.get(value)
        if code is None:
            code = _keep(self._currencies, value, normalise_currency(value))
        return code

    def _customer(self, line: int, values: Values, ref: Ref | None) -> Row:
        external = dict([ref]) if ref else {}
        attributes: dict[str, Any] = {}
        for name, value in values.items():
            if name.startswith(EXTERNAL_IDS):
                external[name.removeprefix(EXTERNAL_IDS)] = _required(values, name).strip()
            elif name.startswith(ATTRIBUTES):
                attributes[name.removeprefix(ATTRIBUTES)] = value
        ref = ref or next(iter(external.items()), None)
        customer_id = _uuid(values)
        moment = self._moment(values)
        occurred_at = moment.at if moment is not None else None
        tags = _tags(values.get("tags"))
        keys: list[str | None] = [None] * (1 + len(tags))
        if not external:  # no natural key: the row's own, as earlier imports derived it
            customer_id = customer_id or uuid5(IMPORT_NAMESPACE, f"{self.digest}:{line}")
            keys = [f"import:{self.digest}:{line}:{i}" for i in range(len(keys))]
        register = m.RegisterCustomer(
            customer_id=customer_id,
            idempotency_key=keys[0],
            name=_required(values, "name"),
            email=_text(values, "email"),
            phone=_text(values, "phone"),
            source=_text(values, "source"),
            lifecycle_stage=_text(values, "lifecycle_stage") or "prospect",
            attributes=attributes,
            external_ids=external,
            occurred_at=occurred_at,
        )
        target = _target(customer_id, ref)
        tagged = (
            m.TagCustomer(**target, idempotency_key=key, tag=tag, occurred_at=occurred_at)
            for key, tag in zip(keys[1:], tags, strict=True)
        )
        return Row(line, (register, *tagged), customer_id, ref)

    def _purchase(self, line: int, values: Values, ref: Ref | None) -> Row:
        customer_id = _uuid(values)
        if customer_id is not None and ref is not None:
            raise InvalidInput("customer_ref", "give customer_id or an external id, not both")
        if customer_id is None and ref is None:
            raise InvalidInput("customer_id", "is required (or external_id / customer_ref.id)")
        amount, currency = _present(values, "amount"), _present(values, "currency")
        moment = self._moment(values)
        order_id = _text(values, "order_id")
        if order_id is None:  # derived from canonical values (the handler checks them anyway)
            amount, currency = parse_amount(amount), self._currency(currency)
            who = f"id:{customer_id}" if ref is None else f"ref:{ref[0]}\x1f{ref[1]}"
            at = moment.text if moment is not None else ""
            order_id = derived_order_id(who, at, amount, currency, self.occurrences)
        purchase = m.RecordPurchase(
            **_target(customer_id, ref),
            order_id=order_id,
            amount=amount,
            currency=currency,
            occurred_at=moment.at if moment is not None else None,
        )
        return Row(line, (purchase,), customer_id, ref, order_id)


def _target(customer_id: UUID | None, ref: Ref | None) -> dict[str, Any]:
    """How a command names the row's customer: its id if known, else its external id."""
    if customer_id is not None or ref is None:
        return {"customer_id": customer_id}
    return {"customer_ref": m.CustomerRef(system=ref[0], id=ref[1])}
