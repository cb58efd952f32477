"""Every test process: a development setup, and no settings file. A
``./var/dev/clientele.env`` left by ``clientele dev up`` in the working tree would otherwise
point the tests' default settings at its servers (tests that exercise the file set
``CLIENTELE_ENV_FILE`` themselves). And the slowest modules run first (:data:`SLOW_FIRST`)."""

from __future__ import annotations

import os

import pytest
from hypothesis import settings

os.environ["CLIENTELE_ENV_FILE"] = ""
# The tests run PostgreSQL and the broker as a development setup: the secrets keep their public
# development defaults (tests of the refusal outside development unset this themselves).
os.environ["CLIENTELE_ENV"] = "dev"

# Property tests check behaviour, not speed (speed lives in `clientele bench`): a per-example
# deadline only measures how busy the shared box is, so the suite's profile has none.
settings.register_profile("clientele", deadline=None)
settings.load_profile("clientele")

# The modules that take longest, longest first (`--durations=0` of `make test` on the 2-core box,
# session 31). `make test` hands whole modules to its xdist workers in collection order
# (`--dist loadfile --no-loadscope-reorder`): these start at once, side by side, instead of one
# of them starting late and alone at the end of the run. Order only: a module not listed runs in
# pytest's order after them, a stale entry does nothing.
SLOW_FIRST = (
    "tests/e2e/test_bulk_import.py",
    "tests/e2e/test_bench.py",
    "tests/integration/test_ingest_partitions.py",
    "tests/integration/test_group_consumer.py",
    "tests/integration/test_outages.py",
    "tests/e2e/test_faults.py",
    "tests/integration/test_live_equals_rebuild.py",
    "tests/e2e/test_schemathesis.py",
    "tests/integration/test_broker_loss.py",
    "tests/integration/test_broker_loss_backlog.py",
    "tests/integration/test_pipeline_full_mode.py",
    "tests/integration/test_kafka_full_mode.py",
    "tests/integration/test_campaign_uplift.py",
    "tests/integration/test_ingest_broker_loss.py",
    "tests/e2e/test_log_privacy.py",
    "tests/integration/test_started_during_outage.py",
    "tests/integration/test_inbound_volume.py",
    "tests/integration/test_lifecycle_simulation.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """:data:`SLOW_FIRST`'s modules first, in its order; every module's tests keep theirs."""
    rank = {path: index for index, path in enumerate(SLOW_FIRST)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::")[0], len(rank)))
