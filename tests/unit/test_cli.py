"""The ``clientele`` console script: help everywhere, CSV import, replay."""

from __future__ import annotations

import csv
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from typer.testing import CliRunner

from api.cli import app
from bootstrap import build
from commands import messages as m
from commands.service import Context
from infra.settings import get_settings
from infra.store import EventStore

runner = CliRunner()
COMMANDS = [
    ["serve"],
    ["migrate"],
    ["replay"],
    ["import"],
    ["import", "customers"],
    ["import", "purchases"],
    ["relay"],
    ["relay", "redrive"],
    ["projections", "redrive"],
    ["policies", "load"],
    ["policies", "show"],
    ["policies", "simulate"],
    ["policies", "sweep"],
    ["policies", "run"],
]


def test_help_lists_commands_and_every_command_has_help() -> None:
    top = runner.invoke(app, ["--help"])
    assert top.exit_code == 0
    for name in ("serve", "migrate", "replay", "import"):
        assert name in top.output
    for command in COMMANDS:
        result = runner.invoke(app, [*command, "--help"])
        assert result.exit_code == 0, result.output
        if len(command) > 1 or command[0] not in (
            "import",
            "projections",
            "keys",
            "dev",
            "dlq",
            "segments",
        ):
            assert "Example" in result.output, command


def test_import_customers_reports_bad_rows_and_is_idempotent(database: str, tmp_path: Path) -> None:
    csv_file = tmp_path / "customers.csv"
    csv_file.write_text(
        "name,email,phone,tags,city\n"
        "Ada Lovelace,ADA@example.com,+44 20 7946 0958,VIP;Gold Member,London\n"
        ",nobody@example.com,,,\n"  # line 3: no name
        "Ada Twin,ada@example.com,,,\n"  # line 4: duplicate email (dedup)
        "Bob,bob@example.com,,!!!,\n"  # line 5: bad tag -> whole row rejected, nothing applied
        "Chloé,chloe@example.com,,,Paris\n",
        encoding="utf-8",
    )
    first = runner.invoke(app, ["import", "customers", str(csv_file)])
    assert first.exit_code == 1, first.output
    assert "2 imported, 0 unchanged, 3 rejected" in first.output
    for line in ("line 3: name", "line 4: email", "line 5: tag"):
        assert line in first.output
    results = list(csv.DictReader(tmp_path.joinpath("customers.csv.result.csv").open()))
    assert [(r["line"], r["outcome"], r["code"]) for r in results] == [
        ("2", "imported", ""),
        ("3", "rejected", "validation"),
        ("4", "rejected", "email-taken"),
        ("5", "rejected", "validation"),
        ("6", "imported", ""),
    ]
    store = EventStore(database)
    try:
        registered = [n for n in store.notifications(0, 1000) if n.topic.endswith(":Registered")]
        assert len(registered) == 2
        head = store.head()
        again = runner.invoke(app, ["import", "customers", str(csv_file)])
        assert "0 imported, 2 unchanged, 3 rejected" in again.output
        assert store.head() == head
        ada = store.customer(UUID(str(registered[0].originator_id)))
        assert results[0]["customer_id"] == str(ada.id)
        assert (ada.email, ada.tags, ada.attributes) == (
            "ada@example.com",
            ["vip", "gold-member"],
            {"city": "London"},
        )
    finally:
        store.close()


def test_import_rejects_unreadable_files(database: str, tmp_path: Path) -> None:
    missing = runner.invoke(app, ["import", "customers", str(tmp_path / "nope.csv")])
    assert missing.exit_code == 2 and "not a readable file" in missing.output
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    result = runner.invoke(app, ["import", "customers", str(empty)])
    assert result.exit_code == 2 and "no header row" in result.output
    binary = tmp_path / "binary.csv"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    result = runner.invoke(app, ["import", "purchases", str(binary)])
    assert result.exit_code == 2 and "not UTF-8" in result.output


def test_replay_prints_the_timeline(database: str, tmp_path: Path) -> None:
    csv_file = tmp_path / "one.csv"
    csv_file.write_text("name,tags\nAda,vip\n")
    assert runner.invoke(app, ["import", "customers", str(csv_file)]).exit_code == 0
    store = EventStore(database)
    customer_id = next(
        n.originator_id for n in store.notifications(0, 10) if n.topic.endswith(":Registered")
    )
    store.close()
    result = runner.invoke(app, ["replay", str(customer_id)])
    assert result.exit_code == 0, result.output
    assert "tag=vip" in result.output
    lines = runner.invoke(app, ["replay", str(customer_id), "--json"]).stdout.splitlines()
    first, second = (json.loads(line) for line in lines)
    assert first["hash"] and second["prev_hash"] == first["hash"]
    assert [(json.loads(line)["type"], json.loads(line)["actor"]) for line in lines] == [
        ("customer.registered", "clientele:import"),
        ("customer.tagged", "clientele:import"),
    ]
    early = runner.invoke(app, ["replay", str(customer_id), "--until", "2000-01-01T00:00:00+00:00"])
    assert early.exit_code == 1 and "no events by then" in early.output
    naive = runner.invoke(app, ["replay", str(customer_id), "--until", "2000-01-01T00:00:00"])
    assert naive.exit_code == 2


def test_replay_shows_what_had_happened_by_a_business_time(database: str) -> None:
    """``--as-of`` keeps the events that had happened by then (business time); ``--until``
    those recorded by then (what we knew); both together, what we knew then about then."""
    services = build()
    try:
        ctx = Context(actor="test")
        outcome = services.commands.execute(
            m.RegisterCustomer(name="Ada", occurred_at=datetime(1997, 1, 15, tzinfo=UTC)), ctx
        )
        customer_id = outcome.customer_id
        assert customer_id is not None
        for order, year in (("A1", 1997), ("A2", 1998)):
            purchase = m.RecordPurchase(
                customer_id=customer_id,
                order_id=order,
                amount="5",
                currency="EUR",
                occurred_at=datetime(year, 3, 1, tzinfo=UTC),
            )
            services.commands.execute(purchase, ctx)
    finally:
        services.close()

    def types(*options: str) -> list[str]:
        result = runner.invoke(app, ["replay", str(customer_id), "--json", *options])
        assert result.exit_code == 0, result.output
        return [json.loads(line)["type"] for line in result.stdout.splitlines()]

    assert types("--as-of", "1997-12-31T00:00:00Z") == [
        "customer.registered",
        "customer.purchase_recorded",
        "customer.lifecycle_stage_changed",
    ]
    assert len(types("--as-of", "1998-12-31T00:00:00Z")) == 4
    before = runner.invoke(app, ["replay", str(customer_id), "--as-of", "1996-01-01T00:00:00Z"])
    assert before.exit_code == 1 and "no events by then" in before.output
    known = ["--until", "2000-01-01T00:00:00Z", "--as-of", "1998-12-31T00:00:00Z"]
    assert runner.invoke(app, ["replay", str(customer_id), *known]).exit_code == 1
    table = runner.invoke(app, ["replay", str(customer_id)]).output
    assert "recorded at" in table and "occurred at" in table and "1997-03-01" in table


def test_projections_status_rebuild_verify(database: str, tmp_path: Path) -> None:
    csv_file = tmp_path / "people.csv"
    csv_file.write_text("name,tags\n" + "".join(f"P{i},t{i % 3}\n" for i in range(40)))
    assert runner.invoke(app, ["import", "customers", str(csv_file)]).exit_code == 0
    assert runner.invoke(app, ["migrate"]).exit_code == 0
    status = runner.invoke(app, ["projections", "status"])
    assert status.exit_code == 0 and "profiles" in status.output and "80" in status.output
    rebuilt = runner.invoke(app, ["projections", "rebuild", "profiles"])
    assert rebuilt.exit_code == 0 and "80 events" in rebuilt.output, rebuilt.output
    verified = runner.invoke(app, ["projections", "verify", "profiles"])
    assert verified.exit_code == 0 and "equals a rebuild" in verified.output
    unknown = runner.invoke(app, ["projections", "rebuild", "nope"])
    assert unknown.exit_code == 2 and "known: profiles" in unknown.output
    nothing = runner.invoke(app, ["projections", "redrive"])
    assert nothing.exit_code == 0 and "no parked customers" in nothing.output


def test_verify_holds_after_an_erasure_and_a_refresh(database: str, tmp_path: Path) -> None:
    """Issue 13 items 6 and 7 from the command line: verify never cries wolf."""
    csv_file = tmp_path / "people.csv"
    csv_file.write_text("name,email,tags\nAda,ada@example.com,vip\nBo,bo@example.com,\n")
    assert runner.invoke(app, ["import", "customers", str(csv_file)]).exit_code == 0
    services = build()
    try:
        new = {"field": "created_at", "op": "after", "value": "-1d"}
        services.segments.define("new", "New", new, None, Context(actor="test"))
        ada = next(e.customer_id for e in services.feed.read(0, 100) if e.data.get("name") == "Ada")
    finally:
        services.close()
    erased = runner.invoke(app, ["erase", str(ada)])
    assert erased.exit_code == 0, erased.output
    later = (datetime.now(UTC) + timedelta(days=2)).isoformat()
    refreshed = runner.invoke(app, ["segments", "refresh", "--at", later])
    assert refreshed.exit_code == 0, refreshed.output
    assert "1 membership changes recorded" in refreshed.output  # Bo; Ada left at her erasure
    for name in ("audit", "segments", "profiles", "analytics"):
        verified = runner.invoke(app, ["projections", "verify", name])
        assert verified.exit_code == 0 and "equals a rebuild" in verified.output, verified.output


def said(result: Any) -> str:
    """Output with rich's line wrapping undone."""
    return " ".join(result.output.split())


def imported(database: str) -> int:
    store = EventStore(database)
    try:
        return store.head()
    finally:
        store.close()


def test_csv_headers_match_after_trimming_and_case_folding(database: str, tmp_path: Path) -> None:
    """Issue 13, item 8: ``name, email`` made the email an attribute (both rows imported) and
    ``Name,Email`` was rejected as "name: Field required"."""
    spaced = tmp_path / "spaced.csv"
    spaced.write_text("name, email\nAda,ada@example.com\nAda Twin,ada@example.com\n")
    result = runner.invoke(app, ["import", "customers", str(spaced)])
    assert "1 imported, 0 unchanged, 1 rejected" in said(result) and result.exit_code == 1
    assert "email" in said(result)  # line 3: the address is taken, uniqueness applies
    cased = tmp_path / "cased.csv"
    cased.write_text(" Name ,EMAIL,Tags,City\nBob,bob@example.com,VIP,Rome\n")
    result = runner.invoke(app, ["import", "customers", str(cased)])
    assert result.exit_code == 0 and "1 imported" in said(result), result.output
    store = EventStore(database)
    try:
        registered = [
            store.customer(UUID(str(n.originator_id)))
            for n in store.notifications(0, 100)
            if n.topic.endswith(":Registered")
        ]
        bob = next(customer for customer in registered if customer.name == "Bob")
        assert (bob.email, bob.tags, bob.attributes) == (
            "bob@example.com",
            ["vip"],
            {"city": "Rome"},
        )
    finally:
        store.close()


@pytest.mark.parametrize(
    ("kind", "header", "message"),
    [
        ("customers", "name,Name", "columns 1 and 2 are both 'name'"),
        ("customers", "name, email ,Email", "columns 2 and 3 are both 'email'"),
        ("customers", "name,,email", "column 2 has no name"),
        ("customers", "name,email,", "column 3 has no name"),
        ("customers", "email,phone", "missing required column(s): name"),
        ("customers", "name,home-city", "unknown column 'home-city'"),
        (
            "purchases",
            "customer_id,order_id,amount,currency,occured_at",
            "unknown column 'occured_at'",
        ),
        ("purchases", "customer_id,order_id,amount", "missing required column(s): currency"),
        ("purchases", "Customer_ID,Order_ID", "missing required column(s): amount, currency"),
    ],
)
def test_ambiguous_or_unknown_headers_refuse_the_file_before_importing(
    database: str, tmp_path: Path, kind: str, header: str, message: str
) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(f"{header}\n" + "Ada,ada@example.com,x,EUR,2024-01-01T00:00:00Z\n" * 3)
    result = runner.invoke(app, ["import", kind, str(path)])
    assert result.exit_code == 2, result.output
    assert message in said(result) and "nothing was imported" in said(result)
    assert imported(database) == 0


@pytest.mark.parametrize(
    ("tail", "message"),
    [
        (b"Eve,eve@example.com\x00\n", "line 12 contains a NUL byte"),
        (b"Eve,eve@example.c\xc3\n", "line 12 is not UTF-8"),
        (b'Eve,"eve@example.com\n', "line 12 is not valid CSV"),
    ],
)
def test_a_broken_file_imports_nothing_even_after_good_rows(
    database: str, tmp_path: Path, tail: bytes, message: str
) -> None:
    """Good rows come first and are committed in batches of one: the file is checked whole
    before anything is imported (a NUL once stopped the import half-way with a traceback)."""
    path = tmp_path / "broken.csv"
    good = b"".join(f"P{i},p{i}@example.com\n".encode() for i in range(10))
    path.write_bytes(b"name,email\n" + good + tail)
    result = runner.invoke(app, ["import", "customers", str(path), "--batch-size", "1"])
    assert result.exit_code == 2, result.output
    assert message in said(result) and "nothing was imported" in said(result)
    assert imported(database) == 0


def test_rows_with_too_many_or_too_few_cells_are_rejected_rows(
    database: str, tmp_path: Path
) -> None:
    path = tmp_path / "ragged.csv"
    path.write_text("name,email\nAda,ada@example.com,extra\nBob\nChloé,chloe@example.com\n")
    result = runner.invoke(app, ["import", "customers", str(path)])
    assert result.exit_code == 1 and "1 imported, 0 unchanged, 2 rejected" in said(result)
    assert "has 3 cells" in said(result) and "has 1 cells" in said(result)


def test_cells_are_held_to_the_text_policy(database: str, tmp_path: Path) -> None:
    path = tmp_path / "controls.csv"
    path.write_text(
        "name,email,note\nAda\x1b[31m,ada@example.com,x\nBob,bob@example.com,a\u202eb\n"
    )
    result = runner.invoke(app, ["import", "customers", str(path)])
    assert result.exit_code == 1 and "0 imported, 0 unchanged, 2 rejected" in said(result)
    assert "U+001B" in said(result) and "U+202E" in said(result)


def test_key_names_are_identifiers(
    database: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CLIENTELE_API_KEYS_FILE", str(tmp_path / "keys.json"))
    get_settings.cache_clear()
    refused = runner.invoke(app, ["keys", "create", "orders\x00svc", "--role", "writer"])
    assert refused.exit_code == 2 and "U+0000" in said(refused)
    refused = runner.invoke(app, ["keys", "create", "orders\u200bsvc", "--role", "writer"])
    assert refused.exit_code == 2 and "U+200B" in said(refused)
    made = runner.invoke(app, ["keys", "create", "orders service", "--role", "writer"])
    assert made.exit_code == 0, made.output
