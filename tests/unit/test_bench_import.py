"""The import scenario's two sides send from alike heaps (BENCHMARKS.md, round 14)."""

from __future__ import annotations

import gc
from pathlib import Path

import pytest

from api.bench import imports
from api.cli.importing.sample import write_sample
from infra.settings import Settings
from tests.import_support import freeze_counts_per_batch


def test_the_batch_path_and_the_import_both_settle_each_file_they_send(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The baseline's prebuilt commands are frozen with start-up, as in the ingest scenario
    (left tracked, they made its full collections rarer than the import's), and each side
    settles again for its second file, freezing the customers the first one cached."""
    sample = write_sample(tmp_path / "sample", customers=20, purchases=60)

    def settings(side: str) -> Settings:
        return Settings(database_url=f"sqlite:///{tmp_path / side}.db", log_json=True)

    frozen = freeze_counts_per_batch(monkeypatch)
    assert imports._batch_path(settings("batch"), sample) > 0
    batch_path = list(frozen)
    frozen.clear()
    assert imports._import(settings("import"), sample, tmp_path) > 0
    for side in (batch_path, frozen):  # one batch per file at this size
        customers_file, purchases_file = side
        assert customers_file > 10_000  # start-up's objects
        assert purchases_file > customers_file  # settled again: the cached customers too
    assert gc.get_freeze_count() == 0
