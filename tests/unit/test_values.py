from decimal import Decimal

import pytest

from domain import values as v
from domain.errors import InvalidInput
from domain.payloads import normalise_attributes


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("  Ada   Lovelace ", "Ada Lovelace"),
        ("Zoe\u0308\tMiller", "Zo\u00eb Miller"),
        ("李 小龙", "李 小龙"),
    ],
)
def test_names_are_trimmed_nfc_and_collapsed(raw: str, expected: str) -> None:
    assert v.normalise_name(raw) == expected


@pytest.mark.parametrize("raw", ["", "   ", None, 3, "x" * 201])
def test_bad_names_are_rejected(raw: object) -> None:
    with pytest.raises(InvalidInput) as caught:
        v.normalise_name(raw)
    assert caught.value.field == "name"


def test_email_is_normalised_without_network() -> None:
    assert v.normalise_email(" Ada.Lovelace@Example.COM ") == "ada.lovelace@example.com"
    assert v.normalise_email("user@bücher.de") == "user@bücher.de"


@pytest.mark.parametrize("raw", ["no-at-sign", "a@b", "a@@b.com", "", "a b@c.com"])
def test_invalid_emails_name_the_field(raw: str) -> None:
    with pytest.raises(InvalidInput, match="email"):
        v.normalise_email(raw)


def test_phone_is_e164_with_default_region() -> None:
    assert v.normalise_phone("030 901820", "DE") == "+4930901820"
    assert v.normalise_phone("+1 (650) 253-0000", "DE") == "+16502530000"
    with pytest.raises(InvalidInput, match="phone"):
        v.normalise_phone("12", "DE")
    with pytest.raises(InvalidInput, match="phone"):
        v.normalise_phone("not a number", "DE")


def test_tags_keep_their_meaning_and_are_never_truncated() -> None:
    assert v.normalise_tag("  VIP   Gold_member ") == "vip-gold-member"
    assert v.normalise_tag("数据") == "数据"  # not transliterated to "shu-ju"
    assert (v.normalise_tag("C++"), v.normalise_tag("C#")) == ("c++", "c#")  # not both "c"
    assert v.normalise_tag("\uff36\uff49\uff50") == "vip"  # fullwidth letters, NFKC case-folded
    assert len(v.normalise_tag("a" * 64)) == 64
    with pytest.raises(InvalidInput, match="64"):
        v.normalise_tag("a" * 65)
    with pytest.raises(InvalidInput, match="letters or digits"):
        v.normalise_tag("!!!")
    with pytest.raises(InvalidInput, match="'!' is not allowed"):
        v.normalise_tag("VIP Gold!!")  # refused, not silently dropped
    with pytest.raises(InvalidInput) as caught:
        v.normalise_tag("gold!", "tier")
    assert caught.value.field == "tier"


def test_amounts_and_currencies() -> None:
    assert v.parse_amount("12.50") == Decimal("12.50")
    assert v.normalise_currency("eur") == "EUR"
    for bad in ["-1", "NaN", "Infinity", "1.00001", "abc", 1.5]:
        with pytest.raises(InvalidInput, match="amount"):
            v.parse_amount(bad)
    for bad_currency in ["EURO", "XXY", "", "12"]:
        with pytest.raises(InvalidInput, match="currency"):
            v.normalise_currency(bad_currency)


def test_scores_and_enums() -> None:
    assert v.check_score("nps", 0, 0, 10) == 0
    assert v.check_score("nps", None, 0, 10) is None
    for bad in [-1, 11, True, "5", 5.0]:
        with pytest.raises(InvalidInput, match="nps"):
            v.check_score("nps", bad, 0, 10)
    assert (
        v.parse_enum(v.ConsentPurpose, "purpose", "Email_Marketing")
        is v.ConsentPurpose.EMAIL_MARKETING
    )
    with pytest.raises(InvalidInput, match="purpose: must be one of"):
        v.parse_enum(v.ConsentPurpose, "purpose", "newsletter")


def test_attributes_are_flat_scalars() -> None:
    assert normalise_attributes({"tier_name": " gold ", "age": 3, "gone": None}) == {
        "tier_name": "gold",
        "age": 3,
        "gone": None,
    }
    for bad in [{"Bad-Key": 1}, {"nested": {"a": 1}}, {"x": float("nan")}, []]:
        with pytest.raises(InvalidInput, match="attributes"):
            normalise_attributes(bad)
