"""Does an assigned consumer make progress? The watch behind ``consumer.fetch_stalled``.

A consumer-group member can look healthy to its group (heartbeats answered, so
:class:`infra.kafka_group.GroupConsumer` sees it live) and still apply nothing: after the broker
lost its topics and the relay republished them, reliability run 3 found ``clientele consume``
idle in ``KafkaConsumer.poll`` for minutes, logging nothing, while the topic held records past
its positions. Whatever holds kafka-python's fetcher back (a partition never fetchable again, a
fetch that never ends, partitions of the topic nobody was assigned), the sign is the same and cheap to see at
each look at the topic: a partition behind the topic's end whose position has not moved for
``stall_seconds``. A member with partitions assigned also watches the topic's other partitions
through the group's offsets stored with the read models (another member may hold them: they
must move then; a member with none is joining, which :class:`infra.kafka_group.GroupConsumer`
watches; run 3-like repro: a member stuck with 4 of 6 partitions after the relay recreated the
topic tansu had auto-created with 4, its rejoin never sent, partitions 4 and 5 never read).

:class:`FetchWatch` only keeps the clock; the consumer decides what to do (log, then replace its
Kafka consumer: the new member resumes from the offsets stored with the read models).
"""

from __future__ import annotations

from dataclasses import dataclass, field

STALL_SECONDS = 30.0
"""How long a partition may stay behind the topic's end without its position moving (a
projection batch takes well under a second; a group rejoin on tansu about 20 s)."""


@dataclass(frozen=True)
class Stall:
    """Why the consumer is stuck: ``partitions`` maps each stalled partition to its
    (position, end offset); ``seconds``: the longest time one of them stood still."""

    seconds: float
    partitions: dict[int, tuple[int, int]]

    def reason(self, assigned: set[int]) -> str:
        """A sentence for the log and for the consumer's rebuild; a partition not in
        ``assigned`` (this member's) is the group's offset (committed or stored with the data)."""
        behind = ", ".join(
            f"{p} at {position} of {end}"
            + ("" if p in assigned else " (the group's offset, not assigned here)")
            for p, (position, end) in sorted(self.partitions.items())
        )
        return f"no progress for {self.seconds:.0f} s behind the topic's end: partition {behind}"

    def to_dict(self) -> dict[str, dict[str, int]]:
        """``{partition: {"position", "end"}}`` (JSON keys are strings)."""
        return {str(p): {"position": pos, "end": end} for p, (pos, end) in self.partitions.items()}


@dataclass
class FetchWatch:
    """Per partition, the position seen and since when (``time.monotonic()`` seconds)."""

    stall_seconds: float = STALL_SECONDS
    _seen: dict[int, tuple[int, float]] = field(default_factory=dict)

    def look(self, positions: dict[int, int], ends: dict[int, int], now: float) -> Stall | None:
        """Account for one look at the assigned partitions' ``positions`` and the topic's
        ``ends``; a :class:`Stall` if some partition behind its end has not moved for
        ``stall_seconds``. A partition at or past its end is never stalled (tansu reports
        ends by batch: an idle consumer may be past them)."""
        for partition in set(self._seen) - set(positions):
            del self._seen[partition]
        stalled: dict[int, tuple[int, int]] = {}
        longest = 0.0
        for partition, position in positions.items():
            end = ends.get(partition)
            seen = self._seen.get(partition)
            if end is None or position >= end:
                self._seen.pop(partition, None)
            elif seen is None or seen[0] != position:
                self._seen[partition] = (position, now)
            elif now - seen[1] >= self.stall_seconds:
                stalled[partition] = (position, end)
                longest = max(longest, now - seen[1])
        return Stall(longest, stalled) if stalled else None

    def restart(self) -> None:
        """Forget what was seen (the consumer was replaced or repositioned)."""
        self._seen.clear()
