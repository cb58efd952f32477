"""Duplicate detection, field by field: normalisation, comparison levels, blocking, evidence."""

from __future__ import annotations

from typing import Any

import pytest

from domain.duplicates.blocking import MAX_BLOCK, block_keys, candidate_pairs, exact_keys
from domain.duplicates.compare import compare
from domain.duplicates.detect import find_candidates, pair_id
from domain.duplicates.model import MatchModel
from domain.duplicates.records import MatchRecord, email_key, match_record


def record(cid: str = "a", **profile: Any) -> MatchRecord:
    return match_record(cid, {"name": "Robert Smith", **profile})


@pytest.mark.parametrize(
    ("email", "key"),
    [
        ("rob.smith+news@gmail.com", "robsmith@gmail.com"),
        ("r.o.b.smith@googlemail.com", "robsmith@gmail.com"),
        ("rob.smith+x@outlook.com", "rob.smith@outlook.com"),  # dots count at Outlook
        ("rob+x@example.com", "rob+x@example.com"),  # an unknown provider keeps both
    ],
)
def test_email_provider_aliases_fold_to_one_mailbox(email: str, key: str) -> None:
    assert email_key(email) == key


def test_names_are_transliterated_and_titles_dropped() -> None:
    r = record(name="Dr. Zoë  Müller-Łukasz")
    assert (r.name, r.first, r.last) == ("zoe muller lukasz", "zoe", "lukasz")
    assert record(name="王小明").name == "wangxiaoming"


@pytest.mark.parametrize(
    ("other", "level"),
    [
        ("Robert Smith", "exact"),
        ("SMITH Robert", "reordered"),
        ("Bob Smith", "nickname"),
        ("Robrt Smith", "typo"),
        ("Robert Smyth", "typo"),
        ("Nobert Smith", "typo"),
        ("R. Smith", "initial"),
        ("Alice Smith", "same_last_other_first"),
        ("Jane Doe", "other"),
    ],
)
def test_name_levels(other: str, level: str) -> None:
    assert compare(record(), record("b", name=other))["name"] == level


@pytest.mark.parametrize(
    ("a", "b", "level"),
    [
        ("rob@x.com", "rob@x.com", "exact"),
        ("rob.smith@gmail.com", "robsmith+shop@googlemail.com", "alias"),
        ("robsmith@gmail.com", "robsmith@gmial.com", "typo"),
        ("robert.smith@x.com", "robret.smith@x.com", "typo"),
        ("john.smith@x.com", "johnsmith@x.com", "different"),  # dots count: another mailbox
        ("jsmith1@x.com", "jsmith12@x.com", "different"),
        ("rob@x.com", None, "missing"),
    ],
)
def test_email_levels(a: str, b: str | None, level: str) -> None:
    assert compare(record(email=a), record("b", email=b))["email"] == level


def test_phone_address_and_external_id_levels() -> None:
    a = record(
        phone="+442079460958",
        attributes={"address": "12 High Street", "city": "London"},
        external_ids={"erp": "E1"},
    )
    same = record(
        "b",
        phone="+442079460958",
        attributes={"address": "12 HIGH ST.", "city": "london"},
        external_ids={"erp": "E1", "shop": "S9"},
    )
    other = record(
        "c",
        phone="+442079460959",
        attributes={"address": "9 Mill Road", "city": "London"},
        external_ids={"erp": "E2"},
    )
    assert compare(a, same) | {"name": "-", "email": "-"} == {
        "name": "-",
        "email": "-",
        "phone": "exact",
        "address": "exact",
        "external_id": "same_id",
    }
    levels = compare(a, other)
    assert (levels["phone"], levels["address"], levels["external_id"]) == (
        "typo",
        "same_city",
        "conflict",
    )


def test_blocking_finds_swapped_nickname_and_typo_pairs_without_comparing_all() -> None:
    people = [
        record("0", email="rob@x.com"),
        record("1", name="Smith Robert"),
        record("2", name="Bob Smith"),
        record("3", name="Robert Smiht"),
        record("4", name="Jane Doe"),
    ]
    pairs = {
        frozenset((people[i].customer_id, people[j].customer_id))
        for i, j in candidate_pairs(people)
    }
    assert {frozenset({"0", x}) for x in "123"} <= pairs
    assert not any("4" in pair for pair in pairs)


def test_an_oversized_block_is_skipped_and_changed_limits_the_pairs() -> None:
    shared = [
        record(str(i), name=f"P{i} Q{i}", phone="+442079460958") for i in range(MAX_BLOCK + 1)
    ]
    assert list(candidate_pairs(shared)) == []
    few = [record(str(i), name=f"P{i} Q{i}", phone="+442079460958") for i in range(4)]
    assert len(list(candidate_pairs(few))) == 6
    assert {
        frozenset((few[i].customer_id, few[j].customer_id)) for i, j in candidate_pairs(few, ["2"])
    } == {frozenset({"2", x}) for x in "013"}


def test_candidates_carry_probability_and_per_field_evidence() -> None:
    a = record("b-id", email="rob.smith@gmail.com", phone="+442079460958")
    b = record("a-id", name="Bob Smith", email="robsmith+x@gmail.com", phone="+442079460958")
    (found,) = find_candidates([a, b], MatchModel.default(20_000), 0.5)
    assert (found.first, found.second, found.pair_id) == ("a-id", "b-id", pair_id("b-id", "a-id"))
    assert found.match.probability > 0.99
    assert {f: e["level"] for f, e in found.match.evidence.items()} == {
        "name": "nickname",
        "email": "alias",
        "phone": "exact",
        "address": "missing",
        "external_id": "missing",
    }
    assert found.match.evidence["address"]["weight"] == 0
    assert found.match.evidence["phone"]["weight"] > 10


def test_the_same_base_gives_the_same_model() -> None:
    people = [record(str(i), name=f"Person{i % 7} Family{i % 11}") for i in range(60)]
    assert MatchModel.estimate(people).to_json() == MatchModel.estimate(people).to_json()
    restored = MatchModel.from_json(MatchModel.estimate(people).to_json())
    assert restored.score(people[0], people[7]) == MatchModel.estimate(people).score(
        people[0], people[7]
    )


def test_a_registration_is_looked_up_by_exact_keys_only() -> None:
    r = record(email="rob@x.com", phone="+442079460958", attributes={"address": "1 Mill Rd"})
    exact = exact_keys(r)
    assert exact < block_keys(r)
    assert {key[:2] for key in exact} == {"e:", "p:", "n:", "a:"}
    assert {key[:2] for key in block_keys(r) - exact} == {"l:", "f:"}
