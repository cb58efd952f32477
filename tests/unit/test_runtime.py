"""Process tuning: start-up objects leave the collector's tracked generations."""

from __future__ import annotations

import gc

from infra.runtime import settle_heap, settled_heap


def test_settle_heap_freezes_what_is_alive() -> None:
    survivor = [object() for _ in range(1000)]
    try:
        settle_heap()
        assert gc.get_freeze_count() >= len(survivor)
        assert not gc.is_finalized(survivor)  # frozen, not collected
    finally:
        gc.unfreeze()


def test_settled_heap_freezes_for_the_job_then_unfreezes() -> None:
    survivor = [object() for _ in range(1000)]
    try:
        with settled_heap():
            assert gc.get_freeze_count() >= len(survivor)
        assert gc.get_freeze_count() == 0
    finally:
        gc.unfreeze()
