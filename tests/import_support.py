"""What the import tests share: the heap each batch was sent from."""

from __future__ import annotations

import gc
from collections.abc import Sequence
from typing import Any

import pytest

from commands.service import CommandService, Outcome


def freeze_counts_per_batch(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """``gc.get_freeze_count()`` at each ``execute_batch`` from now on (the list fills as batches
    are sent), starting from an unfrozen heap whatever an earlier test in this process settled
    (an app's start-up)."""
    frozen: list[int] = []
    real = CommandService.execute_batch

    def watched(self: CommandService, commands: Sequence[Any], context: Any) -> list[Outcome]:
        frozen.append(gc.get_freeze_count())
        return real(self, commands, context)

    monkeypatch.setattr(CommandService, "execute_batch", watched)
    gc.unfreeze()
    return frozen
