"""Value vocabularies and normalisation: the cleaning and standardising every input goes through.

All functions are pure (no network: email deliverability is never checked here). Every edge
(HTTP, the batch route, the Kafka command topic, CSV import, the CLI) reaches storage through
them, so one input is accepted or refused alike everywhere, and what is accepted is stored in
one canonical form. Input whose meaning would be lost or left ambiguous by that conversion is
refused with an :class:`InvalidInput` naming the field.

Text goes through the text policy (:mod:`domain.text_policy`).
"""

from __future__ import annotations

import math
import re
import unicodedata
from datetime import UTC, datetime
from decimal import Decimal
from enum import StrEnum
from typing import TypeVar

import phonenumbers
import pycountry
from email_validator import EmailNotValidError, validate_email

from domain.email_syntax import plain_email
from domain.errors import InvalidInput
from domain.text_policy import Text, check_text, trim

MAX_TAG_LENGTH = 64
MAX_TAGS_PER_CUSTOMER = 200
MAX_NAME_LENGTH = 200
MAX_SAFE_INTEGER = 2**53 - 1  # larger integers do not survive JSON readers such as JavaScript
MAX_AMOUNT = Decimal("1e12")
MAX_AMOUNT_TEXT = 40
AMOUNT_PLACES = 4
EARLIEST = datetime(1900, 1, 1, tzinfo=UTC)
ATTRIBUTE_KEY = re.compile(r"^[a-z][a-z0-9_]{0,63}$")

E = TypeVar("E", bound=StrEnum)


class Channel(StrEnum):
    EMAIL = "email"
    PHONE = "phone"
    SMS = "sms"
    CHAT = "chat"
    MEETING = "meeting"
    VISIT = "visit"
    OTHER = "other"


class Direction(StrEnum):
    INBOUND = "inbound"
    OUTBOUND = "outbound"


class ContactKind(StrEnum):
    INQUIRY = "inquiry"
    COMPLAINT = "complaint"
    SUGGESTION = "suggestion"
    CARE = "care"
    SALES = "sales"
    OTHER = "other"


class ConsentPurpose(StrEnum):
    EMAIL_MARKETING = "email_marketing"
    SMS_MARKETING = "sms_marketing"
    PHONE_MARKETING = "phone_marketing"
    PROFILING = "profiling"
    THIRD_PARTY_SHARING = "third_party_sharing"


class LifecycleStage(StrEnum):
    PROSPECT = "prospect"
    NEW = "new"
    ACTIVE = "active"
    LOYAL = "loyal"
    AT_RISK = "at_risk"
    CHURNED = "churned"


class Status(StrEnum):
    ACTIVE = "active"
    CHURNED = "churned"
    MERGED = "merged"
    ERASED = "erased"


def parse_enum(enum: type[E], field: str, value: object) -> E:
    """Parse ``value`` (a string, any case, surrounding spaces ignored) into ``enum``."""
    if not isinstance(value, str):
        raise InvalidInput(field, f"must be one of {_allowed(enum)}")
    try:
        return enum(trim(value).lower())
    except ValueError:
        raise InvalidInput(field, f"must be one of {_allowed(enum)}, got {value!r}") from None


def _allowed(enum: type[StrEnum]) -> str:
    """The values of ``enum``, for an error message (spelt out only on an error: 7 % of the
    writer's CPU on the everyday mix when it was built for every parse)."""
    return ", ".join(member.value for member in enum)


def normalise_name(value: object) -> str:
    """Checked as free text, NFC, whitespace runs (tabs, line breaks) collapsed to one space."""
    if not isinstance(value, str):
        raise InvalidInput("name", "must be a string")
    check_text("name", value, Text.MULTILINE)
    name = " ".join(unicodedata.normalize("NFC", value).split())
    if not name:
        raise InvalidInput("name", "is required")
    if len(name) > MAX_NAME_LENGTH:
        raise InvalidInput("name", f"must be at most {MAX_NAME_LENGTH} characters")
    return name


def normalise_email(value: object) -> str:
    """Validate syntax and normalise (lower-cased, IDNA domain); no DNS lookups."""
    if not isinstance(value, str):
        raise InvalidInput("email", "must be a string")
    check_text("email", value, Text.LINE)
    text = trim(value)
    plain = plain_email(text)  # the common shape, known to pass unchanged but for case
    if plain is not None:
        return plain
    try:
        checked = validate_email(text, check_deliverability=False)
    except EmailNotValidError as error:
        raise InvalidInput("email", str(error)) from None
    return checked.normalized.lower()


_PHONE = re.compile(r"^\+?[0-9 ().\-/]+$")


def normalise_phone(value: object, default_region: str) -> str:
    """A phone number in E.164. Only digits, spaces and ``+ ( ) . - /`` are accepted: letters
    (vanity numbers) and extensions have no E.164 form and would be silently lost."""
    if not isinstance(value, str):
        raise InvalidInput("phone", "must be a string")
    check_text("phone", value, Text.LINE)
    if not _PHONE.match(trim(value)):
        raise InvalidInput("phone", "may hold only digits, spaces and + ( ) . - /")
    try:
        parsed = phonenumbers.parse(value, default_region.upper())
    except phonenumbers.NumberParseException as error:
        raise InvalidInput("phone", f"cannot parse {value!r}: {error}") from None
    if not phonenumbers.is_valid_number(parsed):
        raise InvalidInput("phone", f"{value!r} is not a valid phone number")
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


_TAG_SEPARATORS = re.compile(r"[\s_\-]+")
_TAG_SYMBOLS = frozenset("+#&.")


def normalise_tag(value: object, field: str = "tag") -> str:
    """A tag (or tier) in canonical form: NFKC case-folded, runs of spaces, ``_`` and ``-``
    as one ``-``, at most 64 characters. Letters and digits of every script, combining marks
    and ``+ # & .`` are kept (``C++`` and ``C#`` stay apart, ``日本`` stays ``日本``); any other
    character is refused rather than dropped. Slugs stored by older versions are canonical."""
    if not isinstance(value, str):
        raise InvalidInput(field, "must be a string")
    check_text(field, value, Text.LINE)
    folded = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", value).casefold())
    tag = _TAG_SEPARATORS.sub("-", folded).strip("-")
    if not any(unicodedata.category(char)[0] in "LN" for char in tag):
        raise InvalidInput(field, f"{value!r} has no letters or digits")
    for char in tag:
        if char != "-" and char not in _TAG_SYMBOLS and unicodedata.category(char)[0] not in "LMN":
            raise InvalidInput(
                field, f"{char!r} is not allowed (letters, digits, marks, + # & . and separators)"
            )
    if len(tag) > MAX_TAG_LENGTH:
        raise InvalidInput(field, f"must be at most {MAX_TAG_LENGTH} characters once normalised")
    return tag


def normalise_currency(value: object) -> str:
    """An ISO-4217 alphabetic code, upper-cased."""
    code = trim(value).upper() if isinstance(value, str) else ""
    if len(code) != 3 or not code.isascii() or pycountry.currencies.get(alpha_3=code) is None:
        raise InvalidInput("currency", f"{value!r} is not an ISO-4217 currency code")
    return code


_AMOUNT = re.compile(r"^[0-9]+(?:\.([0-9]+))?$")


def parse_amount(value: object) -> Decimal:
    """A decimal string of digits with an optional fraction of at most 4 places, below 10^12.

    Numbers are refused (a JSON number may already have lost digits), and so are signs,
    exponents (``1E+2``), bare fractions (``.5``) and grouping; surrounding spaces are ignored.
    The result prints in the schema's form (``007.50`` becomes ``7.50``)."""
    if isinstance(value, Decimal):
        text = format(value, "f") if value.is_finite() else str(value)
    elif isinstance(value, str):
        if len(value) > MAX_AMOUNT_TEXT:
            raise InvalidInput("amount", f"must be at most {MAX_AMOUNT_TEXT} characters")
        text = trim(value)
    else:
        raise InvalidInput("amount", "must be a decimal string such as '12.50', not a number")
    match = _AMOUNT.match(text)
    if match is None:
        raise InvalidInput(
            "amount",
            "must be digits with an optional fraction, such as '12.50' "
            "(no sign, exponent or grouping)",
        )
    if match.group(1) is not None and len(match.group(1)) > AMOUNT_PLACES:
        raise InvalidInput("amount", f"must have at most {AMOUNT_PLACES} decimal places")
    amount = Decimal(text)
    if amount >= MAX_AMOUNT:
        raise InvalidInput("amount", "is implausibly large")
    return amount


def check_score(field: str, value: object, low: int, high: int) -> int | None:
    """An optional integer within ``[low, high]``; booleans, strings and floats are refused."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInput(field, f"must be an integer from {low} to {high}")
    if not low <= value <= high:
        raise InvalidInput(field, f"must be from {low} to {high}, got {value}")
    return value


def utc_text(moment: datetime) -> str:
    """An instant as stored text: UTC with microseconds, so stored times sort as text."""
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def check_integer(field: str, value: object) -> int:
    """A JSON integer; ``true``, ``"7"`` and ``7.0`` are refused, not converted."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInput(field, "must be an integer")
    return value


def check_flag(field: str, value: object) -> bool:
    """A JSON boolean; ``"yes"``, ``1`` or ``"false"`` are refused, not guessed at."""
    if not isinstance(value, bool):
        raise InvalidInput(field, "must be true or false")
    return value


def check_aware(field: str, value: datetime) -> datetime:
    """Timestamps must carry a time zone so their instant is unambiguous."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidInput(field, "must include a time zone offset")
    return value


_RFC3339 = re.compile(
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.([0-9]+))?([Zz]|[+-][0-9]{2}:[0-9]{2})$"
)
_TIMESTAMP = "an RFC 3339 date-time with an offset, such as 2026-05-01T12:00:00Z"


def parse_timestamp(field: str, value: object) -> datetime:
    """An instant, as an aware datetime in UTC (its canonical form), from 1900 on.

    Strings must be RFC 3339 with seconds and an offset; unix numbers (seconds or
    milliseconds?), dates without a time, naive times, the unknown offset ``-00:00`` and more
    than 6 fractional digits (finer than a microsecond) are ambiguous or lossy: refused."""
    if isinstance(value, datetime):
        moment = check_aware(field, value)
    elif isinstance(value, str):
        match = _RFC3339.match(trim(value))
        if match is None:
            raise InvalidInput(field, f"must be {_TIMESTAMP}")
        if match.group(2) == "-00:00":
            raise InvalidInput(
                field, "offset -00:00 means unknown (RFC 3339): send Z or the offset"
            )
        if match.group(1) is not None and len(match.group(1)) > 6:
            raise InvalidInput(field, "must have at most 6 fractional digits (microseconds)")
        try:
            moment = datetime.fromisoformat(trim(value).upper())
        except ValueError:
            raise InvalidInput(field, f"is not a valid date-time: {value!r}") from None
    else:
        raise InvalidInput(field, f"must be {_TIMESTAMP}, not a number (seconds or ms?)")
    try:
        moment = moment.astimezone(UTC)
    except OverflowError:
        raise InvalidInput(field, "is out of range") from None
    if moment < EARLIEST:
        raise InvalidInput(field, "must not be before 1900-01-01T00:00:00Z")
    return moment


def check_number(field: str, value: int | float) -> int | float:
    """A JSON number every reader gets back exactly: finite, integers within ±(2^53 - 1)."""
    if isinstance(value, float) and not math.isfinite(value):
        raise InvalidInput(field, "must be finite")
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_SAFE_INTEGER:
        raise InvalidInput(field, "integers must be within ±(2^53 - 1); send larger ones as text")
    return value
