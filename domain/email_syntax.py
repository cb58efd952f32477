"""The common email address shape, recognised without ``email_validator``'s full parse.

``email_validator`` took 12-14 % of a registration's CPU in the batch path (py-spy, issue 16). Nearly every address has one plain shape: ASCII letters, digits and
``_ + -`` in dot-separated runs, ``@``, and host-name labels ending in a letter-only top-level
domain. For that shape the validator's verdict is known in advance (it accepts) and so is its
normal form (the address lower-cased), so :func:`plain_email` answers it directly. Anything
else, including every address near a rule (lengths, ``--`` in a label, special-use names), is
left to the validator, which stays the only authority on what it refuses.
``tests/unit/test_email_syntax.py`` checks that the two agree on generated addresses.
"""

from __future__ import annotations

import re

import email_validator

LOCAL_PART_MAX = 64
DOMAIN_MAX = 253
ADDRESS_MAX = 254
LABEL_MAX = 63

# explicit ASCII classes: no re.IGNORECASE, which lets U+212A KELVIN SIGN match "k"
_PLAIN = re.compile(
    r"[A-Za-z0-9_+-]+(?:\.[A-Za-z0-9_+-]+)*"
    r"@(?P<domain>(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?\.)+[A-Za-z]+)\Z"
)


def plain_email(text: str) -> str | None:
    """``text``'s normal form (lower case) if it is a plain ASCII address that
    ``email_validator`` accepts as it stands; None when the validator must decide."""
    if len(text) > ADDRESS_MAX:
        return None
    match = _PLAIN.match(text)
    if match is None:
        return None
    domain = match["domain"].lower()
    if len(text) - len(domain) - 1 > LOCAL_PART_MAX or len(domain) > DOMAIN_MAX or "--" in domain:
        return None
    if any(len(label) > LABEL_MAX for label in domain.split(".")):
        return None
    if any(domain == name or domain.endswith("." + name) for name in _special_use()):
        return None
    return text.lower()


def _special_use() -> list[str]:
    """The names the validator refuses, read from it (it lets callers change the list)."""
    names: list[str] = email_validator.SPECIAL_USE_DOMAIN_NAMES
    return names
