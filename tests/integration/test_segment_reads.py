"""What deciding a segment for everyone reads (``projections.segments._decide_all``): with a
definition reading ``recommendations.top3``, the folds are read in two chunked passes (rank
everyone, then decide; one pass would hold every fold in memory) and the ranking is used as
computed, never written and read back from ``segment_recs``. Runs on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

import pytest

from commands import messages as m
from commands.segments import SegmentService
from commands.service import CommandService
from consumers.embedded import EmbeddedRunner
from infra.read_tx import Tx
from infra.readstore import ReadStore
from tests.integration.segments_support import CTX, SPENDERS, SegmentsContract

TOP3 = {"field": "recommendations.top3", "op": "contains", "value": "tea"}
BASKETS = (["tea", "cups"], ["cups", "snacks"], ["cups"])


class TestDecideForEveryone(SegmentsContract):
    def reads(self, monkeypatch: pytest.MonkeyPatch) -> list[str]:
        """The statements read through any transaction from now on."""
        statements: list[str] = []
        fetchall = Tx.fetchall

        def counting(tx: Tx, statement: str, params: Any = ()) -> Any:
            statements.append(statement)
            return fetchall(tx, statement, params)

        monkeypatch.setattr(Tx, "fetchall", counting)
        return statements

    @pytest.mark.parametrize(("rule", "passes"), [(TOP3, 2), (SPENDERS, 1)])
    def test_the_folds_are_read_once_per_pass_and_the_ranking_is_not_read_back(
        self,
        service: CommandService,
        segments: SegmentService,
        runner: EmbeddedRunner,
        read_store: ReadStore,
        monkeypatch: pytest.MonkeyPatch,
        rule: dict[str, Any],
        passes: int,
    ) -> None:
        buyers = [self.register(service, name) for name in ("Ann", "Bo", "Cy")]
        for customer, skus in zip(buyers, BASKETS, strict=True):
            self.run(service, m.SetConsent(customer_id=customer, purpose="profiling", granted=True))
            items = [{"sku": sku, "quantity": 1, "unit_price": "1.00"} for sku in skus]
            purchase = m.RecordPurchase(
                customer_id=customer, order_id="o1", amount="2.00", currency="EUR", items=items
            )
            self.run(service, purchase)
        runner.catch_up()
        statements = self.reads(monkeypatch)
        segments.define("watched", "Watched", rule, None, CTX)
        runner.catch_up()
        folds = [s for s in statements if "FROM {segment_state}" in s]
        assert len(folds) == 2 * passes  # a page of three customers, then the empty page
        assert [s for s in statements if "{segment_recs}" in s] == []
        if rule is TOP3:  # decided on the ranking: tea, bought with cups, for cups' buyers
            assert sorted(self.member_ids(read_store, "watched")) == sorted(map(str, buyers[1:]))
