"""The read models' Python CPU per event, each applied alone through ``framework.project``.

A PostgreSQL store is seeded once with the bench workload (:func:`workload.seed`: about 20
events per customer) and read back as envelopes, which are pickled. Each measurement unpickles
a fresh copy (nothing cached on them yet, as in a live batch), freezes the heap
(``gc.freeze``: the loaded envelopes are no garbage to scan), and applies them in batches of
``BATCH`` into a fresh read database, one transaction per batch, timing ``process_time``:
this process's CPU (Python and the client library), not PostgreSQL's. ``fold`` is the profile
fold alone (:func:`projections.profile_fold.apply` into states in memory, no database): the
part of profiles, audit and segments they share, steadier than they are on a busy host. The
models alternate within each repeat, so a busy host inflates all of them alike.

``clientele bench --only fold`` (not part of a full run).
"""

from __future__ import annotations

import pickle
import random
import time
from collections.abc import Callable
from typing import Any

from api.bench import workload
from api.bench.harness import Sizes, Stack, summary
from bootstrap import build
from consumers.migrate import migrate
from domain.events import EVENT_TYPES
from infra.runtime import settled_heap
from projections import profile_fold
from projections.framework import Binding, project

Say = Callable[[str], None]
BATCH = 500
MODELS = ("fold", "profiles", "audit", "segments", "all")
"""What is measured: read models by projection name; ``all``: every read model in one binding
list; ``fold``: the profile fold alone."""


def _envelopes(stack: Stack, sizes: Sizes, say: Say) -> tuple[str, bytes]:
    """(the seeded store's URL, its envelopes in log order pickled)."""
    customers = max(1, sizes.fold_events // 20)
    url = stack.database("fold_store")
    with build(stack.settings(url)) as services:
        migrate(services)
        say(f"fold: writing {sizes.fold_events:,} commands for {customers:,} customers …")
        workload.seed(services.commands, customers, sizes.fold_events, random.Random(13))
        envelopes, reached = [], 0
        while chunk := services.feed.read(reached, 2_000):
            envelopes += chunk
            reached = chunk[-1].position
    return url, pickle.dumps(envelopes)


def _fold_alone(blob: bytes) -> tuple[int, float]:
    """(events, CPU seconds) of folding the pickled customer envelopes into profile states."""
    envelopes = [e for e in pickle.loads(blob) if e.type in EVENT_TYPES]
    states: dict[str, dict[str, Any]] = {}
    with settled_heap():
        cpu = time.process_time()
        for envelope in envelopes:
            if (state := states.get(envelope.customer_key)) is None:
                state = states[envelope.customer_key] = profile_fold.empty(envelope.customer_id)
            profile_fold.apply(state, envelope)
        return len(envelopes), time.process_time() - cpu


def _measure(stack: Stack, store: str, blob: bytes, model: str) -> tuple[int, float]:
    """(events, CPU seconds) of applying the pickled envelopes to ``model`` in a fresh database."""
    if model == "fold":
        return _fold_alone(blob)
    settings = stack.settings(store).model_copy(
        update={"read_database_url": stack.database("fold_read")}
    )
    with build(settings) as target:
        migrate(target)
        projectors = [p for p in target.projectors if model in ("all", p.name)]
        if not projectors:  # else nothing would be timed
            raise ValueError(f"no read model {model!r} to measure")
        bindings = [Binding.live(p) for p in projectors]
        envelopes = pickle.loads(blob)
        with settled_heap():
            cpu = time.process_time()
            for start in range(0, len(envelopes), BATCH):
                with target.read_store.transaction() as tx:
                    project(tx, bindings, envelopes[start : start + BATCH])
            return len(envelopes), time.process_time() - cpu


def run(stack: Stack, sizes: Sizes, say: Say) -> dict[str, Any]:
    """µs of this process's CPU per event for each of :data:`MODELS`, ``sizes.repeats`` times."""
    store, blob = _envelopes(stack, sizes, say)
    micros: dict[str, list[float]] = {model: [] for model in MODELS}
    events = {}
    for repeat in range(sizes.repeats):
        for model in MODELS:
            events[model], seconds = _measure(stack, store, blob, model)
            micros[model].append(seconds / events[model] * 1e6)
            say(f"fold {repeat + 1}/{sizes.repeats}: {model} {micros[model][-1]:.1f} µs/event")
    return {
        "events": events["all"],
        "customer_events": events["fold"],
        "batch": BATCH,
        "cpu_us_per_event": {model: summary(values)["median"] for model, values in micros.items()},
        "repeats": {model: summary(values) for model, values in micros.items()},
    }


def rows(scenarios: dict[str, Any]) -> list[tuple[str, str, str, str, str]]:
    """The report table's rows: one per read model measured."""
    if "fold" not in scenarios:
        return []
    x = scenarios["fold"]
    return [
        (
            f"fold: {'profile fold alone' if model == 'fold' else model} (µs CPU/event)",
            f"{micros:.1f}",
            f"{x['customer_events' if model == 'fold' else 'events']:,} events",
            "",
            "",
        )
        for model, micros in x["cpu_us_per_event"].items()
    ]
