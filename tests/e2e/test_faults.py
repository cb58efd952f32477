"""Fault injection in CI (issue 17): every kind killed once under load, then nothing lost,
nothing doubled, read models equal to a rebuild, the membership topic complete, no consumer
stuck and lag back to 0 within the harness's bound. ``make reliability`` runs the same
harness (:mod:`tests.e2e.faults`) with >= 100 injections."""

from __future__ import annotations

import pytest

from tests.e2e.faults import KINDS, harness
from tests.e2e.faults_verdict import failures, verdict_of

pytestmark = pytest.mark.e2e


def test_every_kind_of_fault_under_load_loses_and_doubles_nothing() -> None:
    with harness(seed=17) as running:
        running.run(len(KINDS), pause=(0.5, 2.0))
        verdict = verdict_of(running)
        # inside the harness: a failed check keeps its log directory
        assert set(running.injected) == set(KINDS)
        assert verdict["acknowledged"] > 50, verdict
        assert verdict["by_surface"]["http"] > 0 and verdict["by_surface"]["kafka"] > 0, verdict
        assert failures(verdict) == [], verdict
