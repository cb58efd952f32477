"""Prometheus metrics shared by the layers (command outcomes; pipeline gauges at scrape)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import REGISTRY, Counter
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from infra.resilience import DATABASE, mark, transient

COMMANDS = Counter(
    "clientele_commands_total", "Commands executed, by type and outcome", ["command", "outcome"]
)
CAMPAIGN_TARGETED = Counter(
    "clientele_campaign_members_total",
    "Audience members decided by campaign launches: treatment, control or excluded:<reason>",
    ["group"],
)


def _oldest_age(parked: dict[str, Any]) -> float:
    oldest = parked.get("oldest")
    return float(oldest["age_seconds"]) if oldest else 0.0


class ProjectionCollector(Collector):
    """Projection and relay positions, lag and parked customers, read when Prometheus
    scrapes from ``report`` (the shape of ``consumers.status.pipeline_report``)."""

    def __init__(self, report: Callable[[], dict[str, Any]]) -> None:
        self.report = report

    def collect(self) -> Iterator[GaugeMetricFamily]:
        """The gauges; none while the database is away (``clientele_dependency_up`` says so,
        and the rest of ``/metrics`` is still served)."""
        try:
            report = self.report()
        except Exception as error:
            if not transient(error):
                raise
            mark(DATABASE, up=False)
            return
        label = ["projection"]
        position = GaugeMetricFamily(
            "clientele_projection_position", "Newest store position applied", labels=label
        )
        lag = GaugeMetricFamily(
            "clientele_projection_lag_events",
            "Events fed but not yet applied (exact)",
            labels=label,
        )
        parked = GaugeMetricFamily(
            "clientele_projection_parked_customers",
            "Customers set aside because an event of theirs could not be applied",
            labels=label,
        )
        catching_up = GaugeMetricFamily(
            "clientele_projection_catching_up",
            "1 while the read model works through a backlog (lag of at least 5,000 events)",
            labels=label,
        )
        oldest = GaugeMetricFamily(
            "clientele_projection_parked_oldest_seconds",
            "How long the longest-parked customer has been waiting (0: none)",
            labels=label,
        )
        for row in report["projections"]:
            position.add_metric([row["name"]], row["position"])
            lag.add_metric([row["name"]], row["lag"])
            catching_up.add_metric([row["name"]], 1.0 if row["state"] == "catching_up" else 0.0)
            parked.add_metric([row["name"]], row["parked"]["count"])
            oldest.add_metric([row["name"]], _oldest_age(row["parked"]))
        yield from (position, lag, catching_up, parked, oldest)
        relay = report.get("relay")
        if relay is not None:
            yield GaugeMetricFamily(
                "clientele_relay_lag_events",
                "Stored events not yet acknowledged by Kafka",
                value=relay["lag"],
            )
            yield GaugeMetricFamily(
                "clientele_relay_parked_customers",
                "Customers whose events the relay holds back (an envelope it cannot publish)",
                value=relay["parked"]["count"],
            )
            yield GaugeMetricFamily(
                "clientele_relay_parked_oldest_seconds",
                "How long the longest-held relay customer has been waiting (0: none)",
                value=_oldest_age(relay["parked"]),
            )


def register_projection_collector(report: Callable[[], dict[str, Any]]) -> Collector:
    """Register (once per app) a collector; returns it so it can be unregistered."""
    collector = ProjectionCollector(report)
    REGISTRY.register(collector)
    return collector
