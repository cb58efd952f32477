"""Value vocabularies and normalisation: the cleaning and standardising every input goes through.

All functions are pure (no network: email deliverability is never checked here).
"""

from __future__ import annotations

import math
import re
import unicodedata
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from typing import Any, TypeVar

import phonenumbers
import pycountry
from email_validator import EmailNotValidError, validate_email
from slugify import slugify

from domain.errors import InvalidInput

MAX_TAG_LENGTH = 64
MAX_TAGS_PER_CUSTOMER = 200
MAX_NAME_LENGTH = 200
MAX_TEXT_LENGTH = 4000
MAX_ATTRIBUTES = 100
MAX_ATTRIBUTE_KEY_LENGTH = 64
MAX_ITEMS = 500
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
    """Parse ``value`` into ``enum`` or raise a specific :class:`InvalidInput`."""
    try:
        return enum(str(value).strip().lower())
    except ValueError:
        allowed = ", ".join(member.value for member in enum)
        raise InvalidInput(field, f"must be one of {allowed}, got {value!r}") from None


def normalise_name(value: object) -> str:
    """Trim, NFC-normalise and collapse inner whitespace; a name is required."""
    if not isinstance(value, str):
        raise InvalidInput("name", "must be a string")
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
    try:
        checked = validate_email(value.strip(), check_deliverability=False)
    except EmailNotValidError as error:
        raise InvalidInput("email", str(error)) from None
    return checked.normalized.lower()


def normalise_phone(value: object, default_region: str) -> str:
    """Parse a phone number and return it in E.164 form."""
    if not isinstance(value, str):
        raise InvalidInput("phone", "must be a string")
    try:
        parsed = phonenumbers.parse(value, default_region.upper())
    except phonenumbers.NumberParseException as error:
        raise InvalidInput("phone", f"cannot parse {value!r}: {error}") from None
    if not phonenumbers.is_valid_number(parsed):
        raise InvalidInput("phone", f"{value!r} is not a valid phone number")
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def normalise_tag(value: object) -> str:
    """Lower-case slug of at most 64 characters; never silently truncated."""
    if not isinstance(value, str):
        raise InvalidInput("tag", "must be a string")
    tag = slugify(value)
    if not tag:
        raise InvalidInput("tag", f"{value!r} has no letters or digits")
    if len(tag) > MAX_TAG_LENGTH:
        raise InvalidInput("tag", f"must be at most {MAX_TAG_LENGTH} characters once slugified")
    return tag


def normalise_text(field: str, value: object, *, max_length: int = MAX_TEXT_LENGTH) -> str | None:
    """Optional free text: trimmed, empty becomes ``None``, bounded length."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidInput(field, "must be a string")
    text = unicodedata.normalize("NFC", value).strip()
    if len(text) > max_length:
        raise InvalidInput(field, f"must be at most {max_length} characters")
    return text or None


def normalise_currency(value: object) -> str:
    """An ISO-4217 alphabetic code, upper-cased."""
    code = str(value).strip().upper()
    if len(code) != 3 or pycountry.currencies.get(alpha_3=code) is None:
        raise InvalidInput("currency", f"{value!r} is not an ISO-4217 currency code")
    return code


def parse_amount(value: object) -> Decimal:
    """A non-negative, finite decimal amount with at most 4 fractional digits."""
    if isinstance(value, float | bool):
        raise InvalidInput("amount", "must be a decimal string such as '12.50', not a float")
    try:
        amount = Decimal(str(value).strip())
    except InvalidOperation:
        raise InvalidInput("amount", f"{value!r} is not a decimal number") from None
    if not amount.is_finite():
        raise InvalidInput("amount", "must be finite")
    if amount < 0:
        raise InvalidInput("amount", "must not be negative")
    exponent = amount.as_tuple().exponent
    if isinstance(exponent, int) and exponent < -4:
        raise InvalidInput("amount", "must have at most 4 decimal places")
    if amount >= Decimal("1e12"):
        raise InvalidInput("amount", "is implausibly large")
    return amount


def check_score(field: str, value: object, low: int, high: int) -> int | None:
    """An optional integer score within ``[low, high]``."""
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


def check_aware(field: str, value: datetime) -> datetime:
    """Timestamps must carry a time zone so their instant is unambiguous."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidInput(field, "must include a time zone offset")
    return value


def normalise_attributes(value: object) -> dict[str, Any]:
    """Flat custom attributes: snake_case keys, JSON scalar values (``None`` removes a key)."""
    if not isinstance(value, dict):
        raise InvalidInput("attributes", "must be an object")
    if len(value) > MAX_ATTRIBUTES:
        raise InvalidInput("attributes", f"at most {MAX_ATTRIBUTES} keys")
    cleaned: dict[str, Any] = {}
    for key, item in value.items():
        if not isinstance(key, str) or not ATTRIBUTE_KEY.match(key):
            raise InvalidInput("attributes", f"key {key!r} must match {ATTRIBUTE_KEY.pattern}")
        if isinstance(item, float) and not math.isfinite(item):
            raise InvalidInput(f"attributes.{key}", "must be finite")
        if item is not None and not isinstance(item, str | int | float | bool):
            raise InvalidInput(f"attributes.{key}", "must be a string, number, boolean or null")
        cleaned[key] = (
            normalise_text(f"attributes.{key}", item, max_length=1000)
            if isinstance(item, str)
            else item
        )
    return cleaned
