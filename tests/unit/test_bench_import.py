"""The import scenario's two sides send from alike heaps (BENCHMARKS.md, round 14)."""

from __future__ import annotations

import gc
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from api.bench import imports
from api.cli.importing.sample import write_sample
from commands.service import CommandService, Outcome
from infra.settings import Settings


def test_the_batch_path_and_the_import_both_send_from_a_settled_heap(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The baseline's prebuilt commands are frozen with start-up, as in the ingest scenario:
    left tracked, they made its full collections rarer than the import's."""
    sample = write_sample(tmp_path / "sample", customers=20, purchases=60)
    frozen: list[int] = []
    real = CommandService.execute_batch

    def watched(self: CommandService, commands: Sequence[Any], context: Any) -> list[Outcome]:
        frozen.append(gc.get_freeze_count())
        return real(self, commands, context)

    monkeypatch.setattr(CommandService, "execute_batch", watched)
    gc.unfreeze()  # whatever an earlier test in this process settled (an app's start-up)

    def settings(side: str) -> Settings:
        return Settings(database_url=f"sqlite:///{tmp_path / side}.db", log_json=True)

    assert imports._batch_path(settings("batch"), sample) > 0
    assert imports._import(settings("import"), sample, tmp_path) > 0
    assert len(frozen) == 4 and min(frozen) > 10_000  # a batch per file and side
    assert gc.get_freeze_count() == 0
