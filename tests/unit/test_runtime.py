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


def test_settled_heap_unfreezes_after_an_error() -> None:
    try:
        try:
            with settled_heap():
                raise RuntimeError("the job failed")
        except RuntimeError:
            pass
        assert gc.get_freeze_count() == 0
    finally:
        gc.unfreeze()


def test_settled_heap_leaves_a_start_up_freeze_in_place() -> None:
    """In a process settled at start, a job's end does not undo that freeze."""
    survivor = [object() for _ in range(1000)]
    try:
        settle_heap()
        frozen = gc.get_freeze_count()
        with settled_heap():
            pass
        assert gc.get_freeze_count() >= frozen >= len(survivor)
    finally:
        gc.unfreeze()
