"""A generated shop export to try imports on (``clientele import sample``), the same data as
CSV and as JSON Lines: what real exports look like, awkward parts included.

``customers.csv`` / ``.jsonl``: ``external_id`` (the shop's customer number, import with
``--system shop``), ``name``, ``email`` (most customers), ``city`` (an attribute) and
``occurred_at``, the date they registered (date only). ``purchases.csv`` / ``.jsonl``:
``external_id``, ``Date`` (date only; import with ``--map Date=occurred_at``), ``amount``
(some ``0.00``: free samples), ``currency`` — and no order ids. Some customers buy the same
thing twice on one day: those rows are identical and are two purchases. Rows are in date
order, every customer buys at least once, on or after the day they registered.

The same ``seed`` gives the same files.
"""

from __future__ import annotations

import csv
import random
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import orjson

FIRST_DAY, DAYS = date(1997, 1, 1), 546  # purchases from 1997-01-01 to 1998-06-30
CITIES = ("Berlin", "Lyon", "Porto", "Graz", "Turku", "Gent", "Cork", "Brno", "Split", "Bergen")
NAMES = ("Ada", "Bo", "Chloé", "Dmitri", "Eun-ji", "Farah", "Gunnar", "Hiro", "Ines", "José")
CUSTOMER_COLUMNS = ("external_id", "name", "email", "city", "occurred_at")
PURCHASE_COLUMNS = ("external_id", "Date", "amount", "currency")


@dataclass(frozen=True)
class Sample:
    """Where the four files were written and how many rows each has."""

    customers_csv: Path
    customers_jsonl: Path
    purchases_csv: Path
    purchases_jsonl: Path
    customers: int
    purchases: int


def _purchases(customers: int, purchases: int, rng: random.Random) -> list[tuple[int, int, str]]:
    """(day, customer, amount) rows: each customer once, the rest skewed towards a few buyers
    (the busiest of 20k customers buys about 500 times); 2 % are a second identical row."""
    twins = min(max(1, purchases // 50), purchases - customers)
    buyers = list(range(customers)) + [
        int(customers * rng.random() ** 2) for _ in range(purchases - twins - customers)
    ]
    rows = []
    for customer in buyers:
        cents = 0 if rng.random() < 0.03 else rng.randint(100, 30000)
        rows.append((rng.randrange(DAYS), customer, f"{cents // 100}.{cents % 100:02d}"))
    rows += rng.sample(rows, twins)
    rows.sort(key=lambda row: (row[0], row[1]))
    return rows


def write_sample(
    directory: Path, customers: int = 200, purchases: int = 1000, seed: int = 1
) -> Sample:
    """Write ``customers.{csv,jsonl}`` and ``purchases.{csv,jsonl}`` into ``directory``."""
    if customers < 1 or purchases < customers:
        raise ValueError("needs at least one customer and a purchase per customer")
    rng = random.Random(seed)
    directory.mkdir(parents=True, exist_ok=True)
    bought = _purchases(customers, purchases, rng)
    first_day: dict[int, int] = {}
    for day, customer, _ in bought:
        first_day.setdefault(customer, day)
    people = []
    for n in range(customers):
        registered = FIRST_DAY + timedelta(days=first_day[n] - rng.randint(0, 400))
        people.append(
            (
                f"C{n + 1:06d}",
                f"{rng.choice(NAMES)} {n + 1}",
                f"customer{n + 1}@example.com" if rng.random() < 0.9 else "",
                rng.choice(CITIES),
                registered.isoformat(),
            )
        )
    orders = [
        (f"C{customer + 1:06d}", (FIRST_DAY + timedelta(days=day)).isoformat(), amount, "USD")
        for day, customer, amount in bought
    ]
    paths = [
        directory / f"{name}.{ext}"
        for name in ("customers", "purchases")
        for ext in ("csv", "jsonl")
    ]
    for (csv_path, jsonl_path), columns, rows in (
        (paths[:2], CUSTOMER_COLUMNS, people),
        (paths[2:], PURCHASE_COLUMNS, orders),
    ):
        with csv_path.open("w", encoding="utf-8", newline="") as stream:
            writer = csv.writer(stream)
            writer.writerow(columns)
            writer.writerows(rows)
        with jsonl_path.open("wb") as stream:
            for row in rows:
                doc = {k: v for k, v in zip(columns, row, strict=True) if v}
                stream.write(orjson.dumps(doc) + b"\n")
    customers_csv, customers_jsonl, purchases_csv, purchases_jsonl = paths
    return Sample(
        customers_csv, customers_jsonl, purchases_csv, purchases_jsonl, customers, len(orders)
    )
