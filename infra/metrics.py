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

    def __init__(self, report: Callable[[], list[tuple[str, int, int]]]) -> None:
        self.report = report

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


def register_projection_collector(report: Callable[[], list[tuple[str, int, int]]]) -> Collector:
    """Register (once per app) a collector; returns it so it can be unregistered."""
    collector = ProjectionCollector(report)
    REGISTRY.register(collector)
    return collector
