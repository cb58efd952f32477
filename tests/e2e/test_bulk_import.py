"""Bringing a customer base in, as a user does it (issue 14, item 3): ``clientele import`` of a
generated shop export — 4,000 customers with external ids, 20,000 purchases without order ids,
dates only, zero amounts, identical same-day rows — into SQLite and into PostgreSQL, checked
customer by customer through the API against figures this test computes from the file itself,
RFM included (:func:`tests.rfm_support.independent`, the documented method computed the plain way).
The size is what every case needs, not issue 14's bench file (that one is ``clientele bench``'s
``import`` scenario): hundreds of identical rows and zero amounts, buyers with hundreds of
purchases, dozens of result batches, the kill a third of the way in, after a checkpoint.

On each backend one format creates everything and the other is imported again afterwards
(SQLite: JSON Lines, then CSV; PostgreSQL: CSV, then JSON Lines): the second import of the same
data must change nothing. The purchases import is killed (SIGKILL) part-way and run again: it
resumes after its checkpoint and the result is the same as without the crash.
"""

from __future__ import annotations

import csv
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from infra.local_services import PostgresCluster, free_port
from tests.e2e.conftest import CLIENTELE, clientele, process
from tests.rfm_support import Purchase, independent

pytestmark = pytest.mark.e2e
CUSTOMERS, PURCHASES = 4_000, 20_000
IMPORT_SECONDS = 900  # one import on a busy 2-core box
FORMATS = {"sqlite": ("jsonl", "csv"), "postgresql": ("csv", "jsonl")}
RFM_END = datetime(1999, 1, 1, tzinfo=UTC)  # after the sample's last purchase


@dataclass
class Figures:
    """What a customer's profile must say, computed here from the files."""

    registered: date
    count: int = 0
    total: Decimal = Decimal(0)
    first: date | None = None
    last: date | None = None


@pytest.fixture(scope="module")
def sample() -> Iterator[Path]:
    folder = Path(tempfile.mkdtemp(prefix="clientele-e2e-sample-"))
    try:
        clientele(
            dict(os.environ),
            *("import", "sample", str(folder)),
            *("--customers", str(CUSTOMERS), "--purchases", str(PURCHASES)),
        )
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def expected(sample: Path) -> tuple[dict[str, Figures], list[Purchase]]:
    """Per external id: registration date, purchase count, total, first and last day; every
    purchase as (external id, instant, amount) — and a check that the file has what the
    issue asks for."""
    with (sample / "customers.csv").open(encoding="utf-8", newline="") as f:
        figures = {
            row["external_id"]: Figures(date.fromisoformat(row["occurred_at"]))
            for row in csv.DictReader(f)
        }
    rows = []
    with (sample / "purchases.csv").open(encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        assert "order_id" not in (reader.fieldnames or [])
        for row in reader:
            assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", row["Date"])
            day = date.fromisoformat(row["Date"])
            who = figures[row["external_id"]]
            who.count += 1
            who.total += Decimal(row["amount"])
            who.first = min(who.first or day, day)
            who.last = max(who.last or day, day)
            rows.append(tuple(row.values()))
    assert len(figures) == CUSTOMERS and len(rows) == PURCHASES
    assert len(rows) - len(set(rows)) >= 100  # identical same-day rows: separate purchases
    assert sum(1 for row in rows if Decimal(row[2]) == 0) >= 100
    assert max(who.count for who in figures.values()) >= 200  # a buyer with hundreds
    purchases = [
        (who, datetime.combine(date.fromisoformat(day), datetime.min.time(), UTC), Decimal(amount))
        for who, day, amount, _currency in rows
    ]
    return figures, purchases


@contextmanager
def backend(kind: str) -> Iterator[tuple[dict[str, str], Path]]:
    """The environment of a fresh store (embedded mode: projections fed in-process)."""
    home = Path(tempfile.mkdtemp(prefix=f"clientele-e2e-import-{kind}-"))
    home.chmod(0o755)  # PostgreSQL runs as its own user below it
    env = {**os.environ, "CLIENTELE_API_KEYS_FILE": str(home / "keys.json")}
    env.pop("CLIENTELE_KAFKA_BOOTSTRAP", None)
    with ExitStack() as stack:
        stack.callback(shutil.rmtree, home, ignore_errors=True)
        if kind == "postgresql":
            postgres = PostgresCluster(home / "pg", free_port(), fast=True)
            postgres.start()
            stack.callback(postgres.stop)
            env["CLIENTELE_DATABASE_URL"] = postgres.url
        else:
            env["CLIENTELE_DATABASE_URL"] = f"sqlite:///{home / 'clientele.db'}"
        clientele(env, "migrate")
        yield env, home


def import_file(env: dict[str, str], kind: str, path: Path) -> subprocess.CompletedProcess[str]:
    args = [CLIENTELE, "import", kind, str(path), "--system", "shop"]
    if kind == "purchases":
        args += ["--map", "Date=occurred_at"]
    return subprocess.run(
        args, env=env, capture_output=True, text=True, timeout=IMPORT_SECONDS, check=False
    )


def kill_part_way(env: dict[str, str], path: Path, after_line: int) -> None:
    """Start the purchases import and SIGKILL it once its checkpoint passed ``after_line``."""
    checkpoint = path.with_name(path.name + ".result.csv.checkpoint")
    args = [CLIENTELE, "import", "purchases", str(path), "--system", "shop"]
    child = subprocess.Popen(
        [*args, "--map", "Date=occurred_at"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + IMPORT_SECONDS
    try:
        while time.monotonic() < deadline and child.poll() is None:
            try:
                if orjson.loads(checkpoint.read_bytes())["line"] >= after_line:
                    break
            except (FileNotFoundError, orjson.JSONDecodeError):
                pass
            time.sleep(0.2)
        assert child.poll() is None, "the import ended before it could be killed part-way"
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait(30)


def results(path: Path) -> list[dict[str, str]]:
    with path.with_name(path.name + ".result.csv").open(encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


class Api:
    def __init__(self, env: dict[str, str], port: int) -> None:
        token = clientele(env, "keys", "create", "reader", "--role", "reader", "--pii")
        self.http = httpx.Client(
            base_url=f"http://127.0.0.1:{port}",
            headers={"Authorization": f"Bearer {token.strip().splitlines()[-1]}"},
            timeout=60,
        )

    def head(self, seconds: float = 600) -> int:
        """The store's head once the API answers, after the profiles reached it."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                ready = self.http.get("/readyz")
                if ready.status_code == 200:
                    head = int(ready.json()["head"])
                    report = self.http.get("/projections").json()
                    (profiles,) = [p for p in report["projections"] if p["name"] == "profiles"]
                    if profiles["position"] >= head:
                        return head
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        pytest.fail("the profiles did not catch up with the store")

    def pages(
        self, path: str, params: dict[str, Any] | None = None, head: int = 0
    ) -> Iterator[dict[str, Any]]:
        """Every item of a paged list, following ``next_cursor``; read at ``head`` or later."""
        cursor: str | None = None
        while True:
            query = {"limit": 500, **(params or {}), **({"cursor": cursor} if cursor else {})}
            page = self.http.get(path, params=query, headers={"X-Min-Position": str(head)})
            assert page.status_code == 200, page.text
            body = page.json()
            yield from body["items"]
            cursor = body["next_cursor"]
            if cursor is None:
                return


def day_of(moment: str | None) -> date | None:
    if moment is None:
        return None
    parsed = datetime.fromisoformat(moment)
    assert parsed.utcoffset() is not None and parsed.astimezone(UTC).time() == datetime.min.time()
    return parsed.astimezone(UTC).date()


@pytest.mark.timeout(2400)
@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_a_shop_export_comes_in_whole_once_crash_or_not(kind: str, sample: Path) -> None:
    want, bought = expected(sample)
    first, again = FORMATS[kind]
    with backend(kind) as (env, home):
        done = import_file(env, "customers", sample / f"customers.{first}")
        assert done.returncode == 0, done.stderr
        assert f"{CUSTOMERS} imported, 0 unchanged, 0 rejected" in done.stdout
        purchases = sample / f"purchases.{first}"
        kill_part_way(env, purchases, PURCHASES // 3)
        done = import_file(env, "purchases", purchases)
        assert done.returncode == 0, done.stderr
        resumed = re.search(r"resuming after line (\d+)", done.stderr)
        assert resumed, done.stderr
        rows = results(purchases)
        offset = 2 if first == "csv" else 1
        assert [int(row["line"]) for row in rows] == list(range(offset, PURCHASES + offset))
        outcomes = {row["outcome"] for row in rows}
        assert outcomes <= {"imported", "unchanged"}  # rows the killed run sent: unchanged
        # killed part-way: past a third, and the resumed run had rows left to import
        after = int(resumed.group(1))
        assert PURCHASES // 3 <= after < PURCHASES + offset - 1
        assert any(r["outcome"] == "imported" for r in rows if int(r["line"]) > after)
        assert len({row["order_id"] for row in rows}) == PURCHASES
        ids = {
            row["external_id"]: row["customer_id"] for row in results(sample / f"customers.{first}")
        }
        port = free_port()
        with process(env, home / "serve.log", "serve", "--port", str(port)):
            api = Api(env, port)
            head = api.head()
            for kind_again in ("customers", "purchases"):
                done = import_file(env, kind_again, sample / f"{kind_again}.{again}")
                count = CUSTOMERS if kind_again == "customers" else PURCHASES
                assert done.returncode == 0, done.stderr
                assert f"0 imported, {count} unchanged, 0 rejected" in done.stdout
            assert api.head() == head  # the second import recorded nothing
            seen = 0
            for profile in api.pages("/v1/customers"):
                external_id = profile["external_ids"]["shop"]
                figures = want[external_id]
                summary = profile["purchases"]
                assert profile["customer_id"] == ids[external_id]
                assert day_of(profile["registered_at"]) == figures.registered
                assert summary["count"] == figures.count, external_id
                assert {k: Decimal(v) for k, v in summary["total"].items()} == {
                    "USD": figures.total
                }, external_id
                assert day_of(summary["first_at"]) == figures.first, external_id
                assert day_of(summary["last_at"]) == figures.last, external_id
                seen += 1
            assert seen == CUSTOMERS
            at = {"at": RFM_END.isoformat(), "currency": "USD"}
            rfm = {row["customer_id"]: row for row in api.pages("/v1/analytics/rfm", at, head)}
        # the same scores whatever ids and order the customers got (no tie-break by id)
        scored = independent([(ids[who], at, amount) for who, at, amount in bought], RFM_END)
        assert rfm == {
            customer_id: {**row, "customer_id": customer_id} for customer_id, row in scored.items()
        }
