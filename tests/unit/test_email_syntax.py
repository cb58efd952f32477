"""The plain-address fast path agrees with ``email_validator`` wherever it answers."""

from __future__ import annotations

import email_validator
import pytest
from email_validator import EmailNotValidError, validate_email
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.email_syntax import plain_email
from domain.values import normalise_email


def validator(text: str) -> str | None:
    """What ``normalise_email`` answered before the fast path: the normal form, or None."""
    try:
        return validate_email(text, check_deliverability=False).normalized.lower()
    except EmailNotValidError:
        return None


# near every rule: case, dots, dashes ("ab--", "xn--"), digits, the Kelvin sign, non-ASCII,
# characters valid only in local parts, spaces, a trailing newline
ALPHABET = "aAbxnzZK09-._+@!#é\u212a \n"
PLAIN = "aAbxnz09-._+"  # mostly accepted: the fast path's own ground


def shaped(alphabet: str) -> st.SearchStrategy[str]:
    return st.builds(
        lambda local, labels, tld: f"{local}@{'.'.join([*labels, tld])}",
        st.text(alphabet, min_size=0, max_size=70),
        st.lists(st.text(alphabet, min_size=0, max_size=66), min_size=0, max_size=4),
        st.sampled_from(["com", "COM", "example", "test", "local", "onion", "c0m", "9", "", "x-y"]),
    )


@settings(max_examples=4000, deadline=None)
@given(st.one_of(shaped(ALPHABET), shaped(PLAIN), st.text(ALPHABET, max_size=40)))
def test_the_fast_path_answers_as_the_validator(text: str) -> None:
    fast = plain_email(text)
    if fast is not None:
        assert fast == validator(text), text


EDGES = [
    ("a" * 64 + "@example.com", True),
    ("a" * 65 + "@example.com", False),
    ("a@" + "b" * 63 + ".com", True),
    ("a@" + "b" * 64 + ".com", False),
    ("a@" + ".".join(["b" * 61] * 4) + ".com", True),  # domain of 251, address of 253
    ("a@" + ".".join(["b" * 60] * 5) + ".com", False),  # domain over 253
    ("a" * 64 + "@" + ".".join(["b" * 60] * 3) + "." + "c" * 8 + ".com", False),  # over 254
    ("First.Last+tag@Sub.Example.COM", True),
    ("x@ab--c.com", False),
    ("x@xn--bcher-kva.example", False),
    ("x@host.test", False),
    ("x@host.localhost", False),
    ("x@host.c0m", False),
    ("x@localhost", False),
    (".x@host.com", False),
    ("x.@host.com", False),
    ("x..y@host.com", False),
    ("x@-host.com", False),
    ("x@host-.com", False),
    ("\u212aelvin@host.com", False),
    ("x@host.com\n", False),
]


@pytest.mark.parametrize(("text", "fast"), EDGES)
def test_edges_of_every_rule(text: str, fast: bool) -> None:
    answer = plain_email(text)
    assert (answer is not None) == fast
    if answer is not None:
        assert answer == validator(text)


def test_the_common_shapes_take_the_fast_path() -> None:
    for text in ["c1-9f2a@bench.example", "Jane.Doe@Example.org", "a_b+c@mail.co.uk"]:
        assert plain_email(text) == text.lower() == validator(text)


def test_the_validators_special_use_names_are_read_from_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(
        email_validator,
        "SPECIAL_USE_DOMAIN_NAMES",
        [*email_validator.SPECIAL_USE_DOMAIN_NAMES, "org"],
    )
    assert plain_email("jane@example.org") is None
    assert validator("jane@example.org") is None


def test_normalise_email_still_refuses_what_the_validator_refuses() -> None:
    with pytest.raises(Exception, match="special-use"):
        normalise_email("jane@host.test")
    assert normalise_email("  Jane@Example.ORG ") == "jane@example.org"
