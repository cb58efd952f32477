"""What the command ingest was given at each rebalance, logged once (``ingest.partitions_assigned``,
INFO): per assigned partition where reading starts (the first offset polled there, else the
consumer's position) and the group's committed offset (with its metadata), beside the commands
topic's id in the consumer's metadata. A stalled ingest then says which partitions it holds and
where it stands in each."""

from __future__ import annotations

from typing import Any

import structlog
from kafka.consumer.subscription_state import ConsumerRebalanceListener

log = structlog.get_logger(__name__)

LOOKUP_TIMEOUT_MS = 2_000  # per position or committed-offset lookup: the log never stalls the loop


class AssignmentLog(ConsumerRebalanceListener):  # type: ignore[misc]
    """A rebalance listener that notes each assignment; :meth:`polled` logs it after the poll
    that made it (positions are known then)."""

    def __init__(self, topic: str) -> None:
        self.topic = topic
        self._assigned: list[Any] | None = None  # an assignment not logged yet

    def on_partitions_revoked(self, revoked: list[Any]) -> None:
        """Nothing to do: the ingest commits after each batch."""

    def on_partitions_assigned(self, assigned: list[Any]) -> None:
        self._assigned = sorted(assigned, key=lambda tp: (tp.topic, tp.partition))

    def polled(self, consumer: Any, batches: dict[Any, list[Any]], topic_id: str | None) -> None:
        """Log the assignment noted since the last call, if any: ``consumer`` (a
        :class:`~kafka.KafkaConsumer` or group consumer) just returned ``batches``;
        ``topic_id`` is the commands topic's id in its metadata (None: not known)."""
        if self._assigned is None:
            return
        assigned, self._assigned = self._assigned, None
        partitions = []
        failed: set[str] = set()  # lookups that failed once are not tried again (no stall)
        for tp in assigned:
            batch = batches.get(tp)
            position = batch[0].offset if batch else _lookup(consumer.position, tp, failed)
            committed = _lookup(consumer.committed, tp, failed, metadata=True)
            partitions.append(
                {
                    "partition": tp.partition,
                    "position": position,
                    "committed": getattr(committed, "offset", committed),
                    "committed_metadata": getattr(committed, "metadata", None),
                }
            )
        log.info(
            "ingest.partitions_assigned",
            topic=self.topic,
            topic_id=topic_id,
            partitions=partitions,
        )


def _lookup(call: Any, tp: Any, failed: set[str], **kwargs: Any) -> Any:
    """``call(tp, timeout_ms=..., **kwargs)``, or the error's text if it failed (a log line
    is no reason to stop consuming); not called again once it failed (``failed`` holds the
    names of the calls that did)."""
    name = getattr(call, "__name__", repr(call))
    if name in failed:
        return "unknown: an earlier lookup failed"
    try:
        return call(tp, timeout_ms=LOOKUP_TIMEOUT_MS, **kwargs)
    except Exception as error:  # said in the log line instead
        failed.add(name)
        return f"unknown: {error!r}"
