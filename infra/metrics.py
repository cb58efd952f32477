"""Prometheus metrics shared by the layers (command outcomes; projection gauges at scrape)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import REGISTRY, Counter
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

COMMANDS = Counter(
    "clientele_commands_total", "Commands executed, by type and outcome", ["command", "outcome"]
)


class ProjectionCollector(Collector):
    """Projection positions and lag, read when Prometheus scrapes."""

    def __init__(
        self,
        report: Callable[[], list[tuple[str, int, int]]],
        relay: Callable[[], int | None] = lambda: None,
    ) -> None:
        self.report = report
        self.relay = relay

    def collect(self) -> Iterator[GaugeMetricFamily]:
        position = GaugeMetricFamily(
            "clientele_projection_position", "Newest store position applied", labels=["projection"]
        )
        lag = GaugeMetricFamily(
            "clientele_projection_lag_events",
            "Customer events not yet applied",
            labels=["projection"],
        )
        for name, reached, behind in self.report():
            position.add_metric([name], reached)
            lag.add_metric([name], behind)
        yield position
        yield lag
        relay = self.relay()
        if relay is not None:
            yield GaugeMetricFamily(
                "clientele_relay_lag_events",
                "Stored events not yet acknowledged by Kafka",
                value=relay,
            )


def register_projection_collector(
    report: Callable[[], list[tuple[str, int, int]]], relay: Callable[[], int | None]
) -> Collector:
    """Register (once per app) a collector; returns it so it can be unregistered."""
    collector = ProjectionCollector(report, relay)
    REGISTRY.register(collector)
    return collector
