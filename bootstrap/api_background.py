"""What ``clientele serve`` runs beside the HTTP API: migrate, the embedded runner, segment
refresh, seals, pipeline gauges and, when configured, the policy runner."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from prometheus_client import REGISTRY

from bootstrap.policy_processes import policy_parts, wake_all
from bootstrap.processes import InThread, Worker
from bootstrap.services import Services
from consumers.migrate import migrate
from consumers.periodic import Every
from consumers.segment_refresh import refresh_segments
from consumers.status import pipeline_report
from infra.metrics import register_projection_collector
from infra.runtime import settle_heap
from infra.tamper_evidence import seals


@contextmanager
def api_background(services: Services) -> Iterator[None]:
    """What ``serve`` runs beside the HTTP API: migrate, the embedded runner (a backlog is
    caught up in the background: the API answers at once), the periodic segment refresh and
    seals, the pipeline gauges for Prometheus and, when ``CLIENTELE_POLICIES_IN_SERVE`` (by
    default in embedded mode), the policy runner (:func:`policy_parts`), each part in a thread of its own."""
    settings = services.settings
    migrate(services)
    if services.runner is not None:
        services.runner.start()
    collector = register_projection_collector(lambda: pipeline_report(services))
    every = settings.segment_refresh_seconds
    refresher = Every(
        every,
        lambda: refresh_segments(services.segments, services.read_store, every=every),
        "segments-refresh",
    )
    sealer = Every(
        settings.seal_seconds,
        lambda: seals.seal(services.store_db, settings.seal_key.encode()),
        "audit-seal",
    )
    in_serve = (
        services.embedded if settings.policies_in_serve is None else settings.policies_in_serve
    )
    policies: list[Worker] = []
    if in_serve:
        _, runners, beside = policy_parts(services)
        policies = [*(InThread(r, f"policy-{r.name}") for r in runners), *beside]
        woken = services.commands.on_commit

        def wake(position: int) -> None:  # embedded: the API's own writes wake them
            if woken is not None:
                woken(position)
            wake_all(runners)

        services.commands.on_commit = wake
    refresher.start()
    sealer.start()
    started: list[Worker] = []
    try:
        for worker in policies:
            worker.start()
            started.append(worker)
        settle_heap()
        yield
    finally:
        for worker in started:
            worker.stop()
        sealer.stop()
        refresher.stop()
        REGISTRY.unregister(collector)
        if services.runner is not None:
            services.runner.stop()
