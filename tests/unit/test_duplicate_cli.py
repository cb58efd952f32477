"""Duplicates through the command line on the embedded store: an import's result file names
the probable duplicates of each new customer (in the base and earlier in the same file), and
``clientele duplicates scan`` finds the pairs, then compares only what changed."""

from __future__ import annotations

import csv
from pathlib import Path

from typer.testing import CliRunner

from api.cli import app

runner = CliRunner()
HEADER = "external_id,name,email,phone,address,city\n"


def imported(path: Path, rows: str, system: str) -> list[dict[str, str]]:
    path.write_text(HEADER + rows, encoding="utf-8")
    done = runner.invoke(app, ["import", "customers", str(path), "--system", system])
    assert done.exit_code == 0, done.output
    with path.with_name(path.name + ".result.csv").open(encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def scan(*args: str) -> str:
    done = runner.invoke(app, ["duplicates", "scan", *args])
    assert done.exit_code == 0, done.output
    return " ".join(done.output.split())


def test_import_reports_duplicates_and_the_scan_finds_them(database: str, tmp_path: Path) -> None:
    crm = imported(
        tmp_path / "crm.csv",
        "c1,Robert Smith,rob.smith@gmail.com,+44 20 7946 0958,12 High Street,London\n"
        "c2,Alice Smith,alice@example.com,+44 20 7946 0958,12 High Street,London\n"
        "c3,Jane Doe,jane@example.com,,,\n"
        # the same person twice in one file: the second names the first
        "c4,Zoë Müller,zoe@example.com,+49 151 12345678,,\n"
        "c5,MULLER Zoe,,+4915112345678,,\n",
        "crm",
    )
    ids = {row["external_id"]: row["customer_id"] for row in crm}
    assert [row["outcome"] for row in crm] == ["imported"] * 5
    assert [row["possible_duplicates"] for row in crm[:4]] == ["", "", "", ""]
    (zoe,) = crm[4]["possible_duplicates"].split()
    assert zoe.startswith(f"{ids['c4']}:") and float(zoe.split(":")[1]) >= 0.9

    # Another system's export: Bob is Robert (nickname, Gmail alias, phone as typed at home).
    shop = imported(
        tmp_path / "shop.csv",
        "s1,Bob Smith,robsmith+shop@googlemail.com,+44 (20) 7946-0958,12 High St.,LONDON\n"
        "s2,John Brown,john.brown@example.com,,,\n",
        "shop",
    )
    assert shop[0]["possible_duplicates"].split(":")[0] == ids["c1"]
    assert shop[1]["possible_duplicates"] == ""

    said = scan()
    assert "full scan of 7 live customers" in said
    assert "2 candidate pairs kept" in said
    said = scan()
    assert "incremental scan of 7 live customers" in said
    assert "0 compared again" in said
    assert "full scan of 7" in scan("--full")
