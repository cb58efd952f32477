"""Shared settings of the fuzz tests (hypothesis): modest example counts in CI, scaled up for a
longer local run by ``CLIENTELE_FUZZ_EXAMPLES`` (a multiplier, default 1; README, "Tests")."""

from __future__ import annotations

import json
import os
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

MULTIPLIER = max(1, int(os.environ.get("CLIENTELE_FUZZ_EXAMPLES", "1")))


def fuzz(examples: int) -> settings:
    """Hypothesis settings for ``examples`` cases (times the multiplier), no deadline."""
    return settings(
        max_examples=examples * MULTIPLIER,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )


JSON_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
"""JSON scalars, with integers beyond 64 bits and text that may hold unpaired surrogates."""

JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)


def json_bytes(value: Any) -> bytes:
    """``value`` as JSON text the way any producer might write it: ASCII with ``\\u`` escapes
    (so unpaired surrogates arrive as escapes), big integers as digits."""
    return json.dumps(value).encode()
