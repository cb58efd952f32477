"""GET profile as fast as answered, alone: the API against its two baselines
(:mod:`api.bench.bare_asgi`) on one fresh PostgreSQL, without the rest of the live phase.

``clientele serve`` in embedded mode (no broker: its runner projects the seeded customers
into the PostgreSQL read models), the ``bare`` and ``fastapi`` baselines beside it under the
same server settings; the bytes are compared on 50 customers, then each server gets wrk's
closed loop in turn, ``repeats`` times (:func:`api.bench.live._throughput`: rates, the ratio
API ÷ bare, and each server process's CPU per request). The same figures as the live phase's
``read_throughput``, on a box not also busy with that phase's relay and consumer.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from typing import Any

from api.bench import workload
from api.bench.harness import Sizes, Stack, wait_for
from api.bench.live import BASELINES, profiles_stored, same_bytes, serve_with_baselines, throughput
from api.bench.wrk import wrk_binary
from bootstrap import build
from consumers.migrate import migrate

Say = Callable[[str], None]


def run(stack: Stack, sizes: Sizes, say: Say) -> dict[str, Any]:
    """Seed ``sizes.customers`` customers, start the API and the baselines, measure."""
    wrk_binary()  # fail before setting up anything when the load generator is missing
    settings = stack.settings(stack.database("reads"))
    with build(settings) as services:
        migrate(services)
        ids = workload.seed(services.commands, sizes.customers, sizes.customers, random.Random(13))
    port, _, targets = serve_with_baselines(stack, settings)
    token = stack.api_key()
    say(f"read throughput: waiting for {len(ids):,} profiles …")
    wait_for(lambda: profiles_stored(settings.database_url) >= len(ids), 180, "profiles", every=0.2)
    for kind in BASELINES:
        asyncio.run(same_bytes(port, targets[kind][0], token, ids[:50]))
    return {"read_throughput": throughput(targets, token=token, ids=ids, sizes=sizes, say=say)}
