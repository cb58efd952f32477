"""What the columns (CSV) or keys (JSON Lines) of an import file mean.

A source name is matched after trimming, case-folding and turning runs of spaces into ``_``
(``" Order ID "`` is ``order_id``); ``--map SOURCE=FIELD`` renames a column first
(``FIELD`` ``-`` ignores it). Each name must land on one field of the kind, once:

* customers: ``name`` (required), ``email``, ``phone``, ``source``, ``lifecycle_stage``,
  ``tags`` (``;``-separated), ``occurred_at`` (when they registered), ``customer_id``, the
  customer's id in another system (``external_id`` with ``--system S``, or
  ``customer_ref.system`` + ``customer_ref.id``, or ``external_ids.<system>`` columns), and any
  other name (``a-z``, ``0-9``, ``_``) or ``attributes.<key>`` as a custom attribute;
* purchases: the customer (``customer_id``, or ``external_id`` with ``--system S``, or
  ``customer_ref.system`` + ``customer_ref.id``), ``amount`` and ``currency`` (required),
  ``order_id`` (derived when absent, see :mod:`api.cli.importing.rows`), ``occurred_at``.

``external_id`` is another name for ``customer_ref.id``; a ref's system is its row's
``customer_ref.system`` when given, else ``--system``.

Dates (:func:`read_moment`): an RFC 3339 time with offset is taken as it is; a date
(``1997-01-31``, midnight) or a time without offset (``1997-01-31 14:05[:07]``) is read in the
import's time zone (``--timezone``, default UTC); a local time that does not exist or exists
twice there (daylight saving) is refused rather than guessed.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from domain.errors import InvalidInput
from domain.text_policy import trim
from domain.values import ATTRIBUTE_KEY, parse_timestamp

IGNORED = "-"
REF_SYSTEM, REF_ID = "customer_ref.system", "customer_ref.id"
ALIASES = {"external_id": REF_ID}
_REF = frozenset({"customer_id", REF_SYSTEM, REF_ID})


@dataclass(frozen=True)
class Kind:
    """A kind of import file: its fields, field families (``prefix.<name>``) and needs."""

    name: str
    fields: frozenset[str]
    families: frozenset[str]
    required: tuple[str, ...]
    attributes: bool  # other names are custom attributes

    def place(self, source: str) -> str | None:
        """The field a (folded) source name lands on, or None if this kind has none."""
        name = ALIASES.get(source, source)
        if name in self.fields:
            return name
        family, dot, key = name.partition(".")
        if dot and family in self.families and key:
            if family != "attributes" or ATTRIBUTE_KEY.match(key):
                return name
            return None
        if self.attributes and ATTRIBUTE_KEY.match(name):
            return f"attributes.{name}"
        return None

    def describe(self) -> str:
        """The known names, for error messages."""
        known = sorted(self.fields | set(ALIASES) | {f"{f}.<name>" for f in self.families})
        also = "; other columns (a-z, 0-9, _) become attributes" if self.attributes else ""
        return ", ".join(known) + also


CUSTOMERS = Kind(
    "customers",
    frozenset(
        {"name", "email", "phone", "source", "lifecycle_stage", "tags", "occurred_at"} | _REF
    ),
    frozenset({"external_ids", "attributes"}),
    ("name",),
    attributes=True,
)
PURCHASES = Kind(
    "purchases",
    frozenset({"order_id", "amount", "currency", "occurred_at"} | _REF),
    frozenset(),
    ("amount", "currency"),
    attributes=False,
)
KINDS = {kind.name: kind for kind in (CUSTOMERS, PURCHASES)}


def fold(name: str) -> str:
    """A source name as it is matched: trimmed, case-folded, inner spaces as ``_``."""
    return "_".join(name.casefold().split())


def parse_renames(pairs: Iterable[str], kind: Kind) -> dict[str, str]:
    """``--map SOURCE=FIELD`` options as {folded source: field or ``-``}; :class:`InvalidInput`
    (field ``--map``) for a malformed pair, an unknown field or a source named twice."""
    renames: dict[str, str] = {}
    for pair in pairs:
        source, equals, target = pair.partition("=")
        source, target = fold(source), fold(target)
        if not equals or not source or not target:
            raise InvalidInput("--map", f"{pair!r} must be SOURCE=FIELD (FIELD - ignores it)")
        if source in renames:
            raise InvalidInput("--map", f"column {source!r} is mapped twice")
        if target != IGNORED and kind.place(target) is None:
            raise InvalidInput("--map", f"{target!r} is not a field of {kind.name}")
        renames[source] = target
    return renames


@dataclass(frozen=True)
class Naming:
    """How one file's source names land on fields (the kind, ``--map`` and ``--system``)."""

    kind: Kind
    renames: Mapping[str, str]
    system: str | None

    def field(self, source: str) -> str | None:
        """The field of a source name, None if ignored; :class:`InvalidInput` (``header``)
        if the kind cannot place it."""
        folded = fold(source)
        if not folded:
            raise InvalidInput("header", "a column has no name")
        name = self.renames.get(folded, folded)
        if name == IGNORED:
            return None
        placed = self.kind.place(name)
        if placed is None:
            hint = f"; use --map {source.strip()}=FIELD or --map {source.strip()}=- to skip it"
            raise InvalidInput(
                "header", f"unknown column {folded!r} (known: {self.kind.describe()}){hint}"
            )
        return placed

    def check(self, fields: Iterable[str | None], sources: Iterable[str]) -> None:
        """Whole-file checks of a CSV header: each field once, every ``--map`` source present,
        and what the kind needs (:meth:`check_needs`)."""
        seen: dict[str, int] = {}
        for number, placed in enumerate(fields, start=1):
            if placed is None:
                continue
            if placed in seen:
                raise InvalidInput(
                    "header", f"columns {seen[placed]} and {number} are both {placed!r}"
                )
            seen[placed] = number
        self.check_renames(sources)
        self.check_needs(set(seen))

    def check_renames(self, sources: Iterable[str]) -> None:
        """Every ``--map`` source names a column (a key) of the file: a typo is refused."""
        missing = sorted(set(self.renames) - {fold(source) for source in sources})
        if missing:
            raise InvalidInput("--map", f"the file has no column {missing[0]!r}")

    def check_needs(self, present: set[str]) -> None:
        """The kind's required fields, a customer for purchases, and a system for refs."""
        missing = [name for name in self.kind.required if name not in present]
        if self.kind is PURCHASES and not present & {"customer_id", REF_ID}:
            missing.append("customer_id or external_id (or customer_ref.id)")
        if missing:
            raise InvalidInput("header", f"missing required column(s): {', '.join(missing)}")
        if REF_ID in present and REF_SYSTEM not in present and self.system is None:
            raise InvalidInput(
                "header", "external ids need --system NAME or a customer_ref.system column"
            )
        if REF_SYSTEM in present and REF_ID not in present:
            raise InvalidInput("header", "customer_ref.system needs a customer_ref.id column")


def zone(name: str) -> tzinfo:
    """An IANA time zone (``UTC``, ``Europe/Berlin``); :class:`InvalidInput` if unknown."""
    if name.strip().upper() in {"UTC", "Z"}:
        return UTC
    try:
        return ZoneInfo(name.strip())
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidInput("--timezone", f"{name!r} is not an IANA time zone name") from None


_LOCAL = re.compile(
    r"^([0-9]{4}-[0-9]{2}-[0-9]{2})(?:[Tt ]([0-9]{2}:[0-9]{2}(?::[0-9]{2}(?:\.[0-9]{1,6})?)?))?$"
)


def read_moment(value: str, where: tzinfo, field: str = "occurred_at") -> datetime:
    """An instant in UTC from a date, a local time (read in ``where``) or an RFC 3339 time."""
    text = trim(value)
    local = _LOCAL.match(text)
    if local is None:
        if re.search(r"(?:[Zz]|[+-][0-9]{2}:[0-9]{2})$", text):
            return parse_timestamp(field, text)
        raise InvalidInput(
            field,
            f"{value!r} must be a date (1997-01-31), a local time (1997-01-31 14:05:00) read "
            f"in --timezone ({where}), or an RFC 3339 time with offset (1997-01-31T14:05:00Z)",
        )
    date, time = local.groups()
    try:
        naive = datetime.fromisoformat(f"{date}T{time or '00:00'}")
    except ValueError:
        raise InvalidInput(field, f"{value!r} is not a valid date or time") from None
    moment = naive.replace(tzinfo=where)
    if where is not UTC:
        if moment.astimezone(UTC).astimezone(where).replace(tzinfo=None) != naive:
            raise InvalidInput(field, f"{value!r} does not exist in {where} (clocks skip it)")
        if moment.replace(fold=1).utcoffset() != moment.utcoffset():
            raise InvalidInput(
                field, f"{value!r} happens twice in {where} (clocks repeat it): add an offset"
            )
    return parse_timestamp(field, moment)
