"""A generated customer base with planted duplicates, for the duplicate-detection accuracy test
and the scan benchmark.

People have realistic collisions (common first and last names, households sharing a last
name, address and landline), and each planted duplicate is one of :data:`KINDS`. Every value
goes through the write side's own normalisers (name, email, E.164 phone with region GB), as a
registration would, so "the same phone formatted differently" is tested end to end.
"""

from __future__ import annotations

import random
import string
from dataclasses import dataclass, field
from typing import Any

import phonenumbers

from domain.duplicates.records import email_key
from domain.values import normalise_email, normalise_name, normalise_phone


def _words(text: str) -> tuple[str, ...]:
    return tuple(text.split())


FIRST = _words(
    "james john robert michael william david richard joseph thomas charles christopher daniel "
    "matthew anthony mark donald steven paul andrew joshua kenneth kevin brian george timothy "
    "ronald edward jason jeffrey ryan jacob gary nicholas eric jonathan stephen larry justin "
    "scott brandon benjamin samuel gregory alexander patrick frank raymond jack dennis jerry "
    "mary patricia jennifer linda elizabeth barbara susan jessica sarah karen lisa nancy "
    "betty margaret sandra ashley kimberly emily donna michelle carol amanda dorothy melissa "
    "deborah stephanie rebecca sharon laura cynthia kathleen amy angela shirley anna brenda "
    "pamela emma nicole helen samantha katherine christine debra rachel carolyn janet "
    "catherine maria heather diane ruth julie olivia joyce virginia victoria kelly lauren "
    "christina joan evelyn zoë josé łukasz søren björn françois jürgen małgorzata ines noémie"
)
LAST = _words(
    "smith johnson williams brown jones garcia miller davis rodriguez martinez hernandez "
    "lopez gonzalez wilson anderson thomas taylor moore jackson martin lee perez thompson "
    "white harris sanchez clark ramirez lewis robinson walker young allen king wright scott "
    "torres nguyen hill flores green adams nelson baker hall rivera campbell mitchell carter "
    "roberts gomez phillips evans turner diaz parker cruz edwards collins reyes stewart "
    "morris morales murphy cook rogers gutierrez ortiz morgan cooper peterson bailey reed "
    "kelly howard ramos kim cox ward richardson watson brooks chavez wood james bennett gray "
    "mendoza ruiz hughes price alvarez castillo sanders patel myers long ross foster jimenez "
    "powell jenkins perry russell sullivan bell coleman butler henderson barnes gonzales "
    "fisher vasquez simmons romero jordan patterson alexander hamilton graham reynolds "
    "griffin wallace moreno west cole hayes bryant herrera gibson ellis tran medina aguilar "
    "stevens murray ford castro marshall owens müller schröder nowak kowalski dubois lefèvre "
    "øvergård søndergaard"
)
NICKNAMES = {
    "robert": "bob",
    "william": "bill",
    "richard": "dick",
    "james": "jim",
    "michael": "mike",
    "thomas": "tom",
    "elizabeth": "liz",
    "margaret": "peggy",
    "katherine": "kate",
    "christopher": "chris",
    "jennifer": "jenny",
    "anthony": "tony",
    "joseph": "joe",
    "daniel": "dan",
    "patricia": "pat",
    "rebecca": "becky",
    "deborah": "debbie",
    "samuel": "sam",
    "alexander": "alex",
    "victoria": "vicky",
}
STREETS = _words("high church station park victoria green manor mill school queen king london")
CITIES = _words("london leeds bristol york bath oxford cambridge leicester derby norwich exeter")
DOMAINS = ("gmail.com", "outlook.com", "yahoo.co.uk", "btinternet.com", "hotmail.com", "web.de")
REGION = "GB"


@dataclass
class Base:
    """``profiles[customer_id] = {name, email, phone, attributes, external_ids}`` and the
    planted ``duplicates``: ``{frozenset({original, copy}): kind}``."""

    profiles: dict[str, dict[str, Any]] = field(default_factory=dict)
    duplicates: dict[frozenset[str], str] = field(default_factory=dict)


def _typo(word: str, rng: random.Random) -> str:
    i = rng.randrange(len(word))
    action = rng.choice(("drop", "swap", "replace"))
    if action == "drop" and len(word) > 3:
        return word[:i] + word[i + 1 :]
    if action == "swap" and i < len(word) - 1:
        return word[:i] + word[i + 1] + word[i] + word[i + 2 :]
    return word[:i] + rng.choice(string.ascii_lowercase) + word[i + 1 :]


def _phone(rng: random.Random, prefixes: tuple[str, ...]) -> str:
    """A valid UK number (E.164) starting with one of ``prefixes``."""
    while True:
        prefix = rng.choice(prefixes)
        number = prefix + "".join(rng.choice(string.digits) for _ in range(13 - len(prefix)))
        if phonenumbers.is_valid_number(phonenumbers.parse(number)):
            return number


def _mobile(rng: random.Random) -> str:
    return _phone(rng, ("+4477", "+4478", "+4479", "+4475"))


def _landline(rng: random.Random) -> str:
    return _phone(rng, ("+44207", "+44208", "+44113", "+44117"))


class _Maker:
    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.used_emails: set[str] = set()
        self.serial = 0

    def customer_id(self) -> str:
        self.serial += 1
        return f"00000000-0000-4000-8000-{self.serial:012d}"

    def email(self, first: str, last: str, domain: str | None = None) -> str:
        rng = self.rng
        for _ in range(100):
            local = rng.choice((f"{first}.{last}", f"{first}{last}", f"{first[0]}{last}"))
            if rng.random() < 0.6:
                local += str(rng.randint(1, 999))
            email = normalise_email(f"{local}@{domain or rng.choice(DOMAINS)}")
            if (key := email_key(email)) not in self.used_emails:  # one mailbox, one person
                self.used_emails.add(key)
                return email
        raise RuntimeError("no free email")

    def person(
        self, last: str | None = None, address: dict[str, str] | None = None
    ) -> dict[str, Any]:
        rng = self.rng
        first, last = rng.choice(FIRST), last or rng.choice(LAST)
        profile: dict[str, Any] = {
            "name": normalise_name(f"{first.title()} {last.title()}"),
            "email": self.email(first, last) if rng.random() < 0.9 else None,
            "phone": _mobile(rng) if rng.random() < 0.75 else None,
            "attributes": dict(address or {}),
            "external_ids": {},
        }
        if address is None and rng.random() < 0.6:
            profile["attributes"] = {
                "address": f"{rng.randint(1, 200)} {rng.choice(STREETS).title()} Street",
                "city": rng.choice(CITIES).title(),
            }
        if rng.random() < 0.3:
            profile["external_ids"] = {"erp": f"E{rng.randint(0, 10**9)}"}
        return profile


Person = dict[str, Any]


def _typo_kind(_original: Person, copy: Person, first: str, last: str, maker: _Maker) -> None:
    if maker.rng.random() < 0.5:
        first = _typo(first, maker.rng)
    else:
        last = _typo(last, maker.rng)
    copy["name"] = f"{first.title()} {last.title()}"


def _swapped(_original: Person, copy: Person, first: str, last: str, maker: _Maker) -> None:
    copy["name"] = f"{last.upper()} {first.title()}"
    copy["email"] = None if maker.rng.random() < 0.5 else copy["email"]


def _nickname(original: Person, copy: Person, first: str, last: str, maker: _Maker) -> None:
    if first not in NICKNAMES:  # make the original one of the people known by a nickname
        first = maker.rng.choice(sorted(NICKNAMES))
        original["name"] = normalise_name(f"{first.title()} {last.title()}")
    copy["name"] = f"{NICKNAMES[first].title()} {last.title()}"


def _other_email(original: Person, copy: Person, first: str, last: str, maker: _Maker) -> None:
    copy["email"] = maker.email(first, last)
    copy["phone"] = original["phone"] = copy["phone"] or _mobile(maker.rng)


def _provider_alias(original: Person, copy: Person, first: str, last: str, maker: _Maker) -> None:
    rng = maker.rng
    if not (original["email"] or "").endswith("@gmail.com"):
        original["email"] = maker.email(first, last, "gmail.com")
    local = original["email"].partition("@")[0]
    dotted = ".".join(local.replace(".", "")) if rng.random() < 0.3 else local.replace(".", "")
    tagged = f"{dotted}+{rng.choice(('shop', 'news', 'promo'))}"
    copy["email"] = normalise_email(f"{tagged}@{rng.choice(('gmail.com', 'googlemail.com'))}")
    copy["phone"] = None


def _phone_format(original: Person, copy: Person, _first: str, _last: str, maker: _Maker) -> None:
    phone = original["phone"] = original["phone"] or _mobile(maker.rng)
    national = "0" + phone[3:]
    forms = (
        f"{national[:5]} {national[5:]}",
        f"+44 (0){phone[3:7]} {phone[7:]}",
        f"0044-{phone[3:]}",
    )
    copy["phone"] = maker.rng.choice(forms)
    copy["email"] = None


def _two_systems(original: Person, copy: Person, first: str, last: str, maker: _Maker) -> None:
    """Both systems keep the postal address (an ERP and a web shop, say), in their own form."""
    rng = maker.rng
    if not original["attributes"].get("address"):
        original["attributes"] = {
            "address": f"{rng.randint(1, 200)} {rng.choice(STREETS).title()} Street",
            "city": rng.choice(CITIES).title(),
        }
    address = original["attributes"]["address"].replace("Street", "St.").upper()
    copy["attributes"] = {**original["attributes"], "address": address}
    if rng.random() < 0.3:
        copy["name"] = f"{first[0].upper()}. {last.title()}"
    copy["external_ids"] = {"shop": f"S{rng.randint(0, 10**9)}"}
    copy["phone" if rng.random() < 0.5 else "email"] = None


KINDS = {
    "typo": _typo_kind,
    "swapped": _swapped,
    "nickname": _nickname,
    "other_email_same_phone": _other_email,
    "provider_alias": _provider_alias,
    "phone_format": _phone_format,
    "two_systems": _two_systems,
}


def _duplicate(original: Person, kind: str, maker: _Maker) -> Person:
    """A new record of the person ``original``, of ``kind`` (both may change)."""
    rng = maker.rng
    first, *_, last = original["name"].lower().split()
    copy: Person = {**original, "attributes": dict(original["attributes"]), "external_ids": {}}
    KINDS[kind](original, copy, first, last, maker)
    taken = copy["email"] is not None and email_key(copy["email"]) == email_key(
        original["email"] or ""
    )
    if taken and kind != "provider_alias":  # registration refuses a live customer's email:
        copy["email"] = maker.email(first, last) if rng.random() < 0.5 else None  # another, none
    if kind != "phone_format" and copy["phone"] and rng.random() < 0.5:
        copy["phone"] = "0" + copy["phone"][3:]  # the same phone as typed in a national form
    if copy["phone"]:
        copy["phone"] = normalise_phone(copy["phone"], REGION)
    copy["name"] = normalise_name(copy["name"])
    return copy


def generate(people: int, duplicates: int, seed: int = 20, households: float = 0.03) -> Base:
    """``people`` distinct people (a ``households`` share of them living with another: same
    last name, address and landline, their own first name and email), plus ``duplicates``
    extra records of some of them, cycling through :data:`KINDS`."""
    rng = random.Random(seed)
    maker = _Maker(rng)
    base = Base()
    ids: list[str] = []
    while len(ids) < people:
        profile = maker.person()
        cid = maker.customer_id()
        base.profiles[cid] = profile
        ids.append(cid)
        if rng.random() < households and len(ids) < people:
            home = {
                "address": f"{rng.randint(1, 200)} {rng.choice(STREETS).title()} Road",
                "city": rng.choice(CITIES).title(),
            }
            last = profile["name"].split()[-1].lower()
            profile["attributes"] = dict(home)
            profile["phone"] = _landline(rng)
            member = maker.person(last=last, address=home)
            member["phone"] = profile["phone"]
            if member["name"].split()[0] != profile["name"].split()[0]:
                mid = maker.customer_id()
                base.profiles[mid] = member
                ids.append(mid)
    for k, original_id in enumerate(rng.sample(ids, duplicates)):
        kind = list(KINDS)[k % len(KINDS)]
        copy_id = maker.customer_id()
        base.profiles[copy_id] = _duplicate(base.profiles[original_id], kind, maker)
        base.duplicates[frozenset({original_id, copy_id})] = kind
    return base
