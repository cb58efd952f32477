"""Kafka plumbing that depends only on the protocol: topic names, creation, clients.

Every client (admin, producers, consumers) is made from :func:`client_config`: the bootstrap
servers and the configured TLS/SASL options.

Topics are created idempotently at start-up with a configured partition count — nothing relies
on broker auto-creation, and an existing topic with another partition count is a configuration
error (:class:`PartitionCountMismatch`), never silently used: per-customer order and the
consumers' stored offsets depend on it. Producers are idempotent with ``acks=all``; no client of
ours asks the broker to create topics (some brokers, tansu among them, do it anyway).

One message-size limit (:class:`MessageLimits`, ``CLIENTELE_KAFKA_MAX_MESSAGE_BYTES``) is used
everywhere: it is the producers' ``max_request_size`` (a record larger than it is refused
before it is sent), every topic's ``max.message.bytes`` (set at creation, raised on existing
topics), and consumers fetch at least that much per partition. Dead-letter records carry the
original plus headers, so DLQ topics and producers allow :data:`DLQ_HEADROOM_BYTES` more.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import structlog
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.admin import ConfigResource, ConfigResourceType, NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError
from kafka.partitioner import DefaultPartitioner, murmur2

from infra.kafka_join import keep_finished_joins
from infra.kafka_producer import FLUSH_TIMEOUT_SECONDS, RenewingProducer
from infra.settings import ConfigurationError, get_settings

log = structlog.get_logger(__name__)
keep_finished_joins()  # every consumer of ours: a join round done between two polls is kept

EVENTS = "customer.events"
COMMANDS = "customer.commands"
COMMAND_RESULTS = "customer.command-results"
SEGMENT_MEMBERSHIP = "customer.segment-membership"
CAMPAIGN_DISPATCH = "campaign.dispatch"
DLQ_SUFFIX = ".dlq"
DEFAULT_MAX_MESSAGE_BYTES = 1_048_576  # Kafka's own default for producers and brokers
DLQ_HEADROOM_BYTES = 16_384  # dlq.* headers: a reason of at most 2,000 bytes, origin, time
TOPIC_MAX_MESSAGE_BYTES = "max.message.bytes"
KEY_HASHES = 65_536  # keys whose murmur2 a producer remembers (about 13 MB when full)


class PartitionCountMismatch(ConfigurationError):
    """Existing topics whose partition count is not the configured one (a configuration error).

    ``found`` maps each such topic to its partition count; ``expected`` is the configured one.
    """

    def __init__(self, found: dict[str, int], expected: int) -> None:
        self.found, self.expected = found, expected
        listed = "; ".join(f"topic {name!r} has {count}" for name, count in sorted(found.items()))
        super().__init__(
            f"{listed} partitions, expected {expected} (CLIENTELE_KAFKA_PARTITIONS): "
            "per-customer order and stored offsets depend on it. Set CLIENTELE_KAFKA_PARTITIONS "
            "to match, or delete the topic (`clientele relay` recreates customer.events from the "
            "store when the broker lost it)"
        )


@dataclass(frozen=True)
class MessageLimits:
    """The largest record (bytes, as the producer measures it: key, value, headers and the
    record-batch overhead) any topic of ours carries; dead letters get a little more."""

    message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES

    @property
    def dlq_bytes(self) -> int:
        return self.message_bytes + DLQ_HEADROOM_BYTES

    def topic_bytes(self, topic: str) -> int:
        """``max.message.bytes`` for ``topic``."""
        return self.dlq_bytes if topic.endswith(DLQ_SUFFIX) else self.message_bytes

    @property
    def fetch_bytes(self) -> int:
        """What a consumer fetches at least, per partition: any record of any topic."""
        return max(self.dlq_bytes, DEFAULT_MAX_MESSAGE_BYTES)


@dataclass(frozen=True)
class Topics:
    """Topic names with the configured prefix."""

    prefix: str = ""

    def name(self, base: str) -> str:
        return f"{self.prefix}{base}"

    @property
    def events(self) -> str:
        return self.name(EVENTS)

    @property
    def commands(self) -> str:
        return self.name(COMMANDS)

    @property
    def command_results(self) -> str:
        return self.name(COMMAND_RESULTS)

    @property
    def segment_membership(self) -> str:
        return self.name(SEGMENT_MEMBERSHIP)

    @property
    def campaign_dispatch(self) -> str:
        return self.name(CAMPAIGN_DISPATCH)

    def dlq(self, topic: str) -> str:
        return topic + DLQ_SUFFIX

    def all(self) -> list[str]:
        main = [
            self.events,
            self.commands,
            self.command_results,
            self.segment_membership,
            self.campaign_dispatch,
        ]
        return main + [self.dlq(t) for t in (self.events, self.commands)]


def client_config(bootstrap: str) -> dict[str, object]:
    """What every Kafka client of ours is made with: ``bootstrap`` and the TLS/SASL options of
    the process's settings (``CLIENTELE_KAFKA_SECURITY_PROTOCOL``, ``…_SASL_*``, ``…_SSL_*``)."""
    return {"bootstrap_servers": bootstrap, **get_settings().kafka_client_options}


def admin_client(bootstrap: str, request_timeout_ms: int = 15_000) -> KafkaAdminClient:
    """An admin client (topics, offsets, cluster metadata); ``close()`` it when done."""
    return KafkaAdminClient(**client_config(bootstrap), request_timeout_ms=request_timeout_ms)


def ensure_topics(
    bootstrap: str,
    names: Iterable[str],
    partitions: int = 12,
    limits: MessageLimits | None = None,
) -> list[str]:
    """Create missing topics with ``partitions`` partitions and ``max.message.bytes`` from
    ``limits``, and raise the limit on existing topics that report less; returns the topics
    created. Safe from many processes.

    Raises :class:`PartitionCountMismatch` (before creating anything) if an existing topic has
    another partition count. Brokers that keep the limit but do not enforce it (tansu) are
    still bounded: our producers refuse larger records themselves.
    """
    limits = limits or MessageLimits()
    names = list(names)
    admin = admin_client(bootstrap)
    try:
        counts = partition_counts(admin)
        wrong = {n: counts[n] for n in names if n in counts and counts[n] != partitions}
        if wrong:
            raise PartitionCountMismatch(wrong, partitions)
        existing = set(counts)
        created = []
        for name in names:
            if name in existing:
                continue
            config = {TOPIC_MAX_MESSAGE_BYTES: str(limits.topic_bytes(name))}
            try:
                admin.create_topics([NewTopic(name, partitions, 1, topic_configs=config)])
                created.append(name)
            except TopicAlreadyExistsError:
                pass
        _raise_limits(admin, [n for n in names if n not in created], limits)
        return created
    finally:
        admin.close()


def partition_counts(admin: KafkaAdminClient) -> dict[str, int]:
    """Every topic's partition count. Asks for all topics at once: naming a missing topic in a
    metadata request makes some brokers (tansu) create it."""
    return {t["name"]: len(t["partitions"]) for t in admin.describe_topics()}


def topic_limits(bootstrap: str, names: Iterable[str]) -> dict[str, int | None]:
    """Each topic's ``max.message.bytes`` as the broker reports it (None: not reported)."""
    admin = admin_client(bootstrap)
    try:
        return _topic_limits(admin, list(names))
    finally:
        admin.close()


def _topic_limits(admin: KafkaAdminClient, names: list[str]) -> dict[str, int | None]:
    if not names:
        return {}
    resources = [ConfigResource(ConfigResourceType.TOPIC, name) for name in names]
    described = admin.describe_configs(resources, config_filter="all").get("topic", {})
    found: dict[str, int | None] = {}
    for name in names:
        value = described.get(name, {}).get(TOPIC_MAX_MESSAGE_BYTES, {}).get("value")
        found[name] = None if value is None else int(value)
    return found


def _raise_limits(admin: KafkaAdminClient, names: list[str], limits: MessageLimits) -> None:
    """Existing topics whose limit is below ours get ours (never lowered)."""
    try:
        low = [
            name
            for name, value in _topic_limits(admin, names).items()
            if value is None or value < limits.topic_bytes(name)
        ]
        if low:
            admin.alter_configs(
                [
                    ConfigResource(
                        ConfigResourceType.TOPIC,
                        name,
                        configs={TOPIC_MAX_MESSAGE_BYTES: str(limits.topic_bytes(name))},
                    )
                    for name in low
                ],
                raise_on_unknown=False,
            )
            log.info("kafka.topic_limits_raised", topics=low, bytes=limits.message_bytes)
    except (KafkaError, ValueError) as error:  # the broker may not allow it: say so, go on
        log.warning("kafka.topic_limits_unchanged", topics=names, error=repr(error))


class KeyHashPartitioner(DefaultPartitioner):  # type: ignore[misc]
    """kafka-python's default partitioner (the Java client's: ``toPositive(murmur2(key)) %
    partitions``), each key hashed once.

    Its murmur2 is pure Python, about 17 µs for a customer id: 7 % of the relay's CPU. A key's
    hash never changes, and our keys are customer ids, so the hashes of the last
    :data:`KEY_HASHES` keys are kept (least recently used out). The partition is still chosen
    per record from the topic's current partitions, so a record lands exactly where kafka-python
    and the Java client put it; records without a key go where the default sends them.
    """

    def __init__(self, keys: int = KEY_HASHES) -> None:
        self.hash = lru_cache(maxsize=keys)(murmur2)

    def partition(  # noqa: PLR0917 - kafka-python's signature
        self,
        topic: str,
        key: Any,
        serialized_key: bytes | None,
        value: Any,
        serialized_value: bytes | None,
        cluster: Any,
    ) -> int:
        if serialized_key is None:
            chosen: int = super().partition(
                topic, key, serialized_key, value, serialized_value, cluster
            )
            return chosen
        partitions = cluster.partitions_for_topic(topic)
        if partitions is None:
            raise ValueError(f"Topic {topic} not found in ClusterMetadata")
        ordered: list[int] = sorted(partitions)
        digest: int = self.hash(serialized_key)
        return ordered[(digest & 0x7FFFFFFF) % len(ordered)]


def producer(
    bootstrap: str,
    limits: MessageLimits | None = None,
    *,
    dlq: bool = False,
    flush_timeout: float = FLUSH_TIMEOUT_SECONDS,
    **overrides: object,
) -> KafkaProducer:
    """Idempotent, acks=all, per-key order preserved, batching under load, partitions by key
    as the Java client does (:class:`KeyHashPartitioner`); records above the limit (the DLQ
    limit with ``dlq``) are refused with ``MessageSizeTooLargeError``; a flush waits at most
    ``flush_timeout`` seconds unless told otherwise (:class:`RenewingProducer`)."""
    settings = producer_settings(bootstrap, limits, dlq=dlq, **overrides)
    return RenewingProducer(lambda: KafkaProducer(**settings), flush_timeout)


def bare_producer(bootstrap: str, partitioner: object) -> KafkaProducer:
    """A plain kafka-python producer with :func:`producer`'s settings but ``partitioner`` and
    none of our wrapping (no :class:`RenewingProducer`): the bench's raw-produce baseline."""
    return KafkaProducer(**producer_settings(bootstrap, partitioner=partitioner))


def producer_settings(
    bootstrap: str, limits: MessageLimits | None = None, *, dlq: bool = False, **overrides: object
) -> dict[str, object]:
    """The :class:`KafkaProducer` settings :func:`producer` makes its producers with."""
    limits = limits or MessageLimits()
    largest = limits.dlq_bytes if dlq else limits.message_bytes
    settings: dict[str, object] = {
        **client_config(bootstrap),
        "acks": "all",
        "enable_idempotence": True,
        "linger_ms": 5,
        # A batch never outgrows what a topic accepts as one message.
        "batch_size": min(256 * 1024, largest),
        "max_request_size": largest,
        "max_in_flight_requests_per_connection": 5,
        "retries": 2_147_483_647,
        "request_timeout_ms": 30_000,
        "allow_auto_create_topics": False,
        "partitioner": KeyHashPartitioner(),
    }
    settings.update(overrides)
    return settings


def consumer(
    bootstrap: str, group: str | None, limits: MessageLimits | None = None, **overrides: object
) -> KafkaConsumer:
    """A consumer that never auto-commits: positions live with the data they produced."""
    limits = limits or MessageLimits()
    settings: dict[str, object] = {
        **client_config(bootstrap),
        "group_id": group,
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        "max_poll_records": 2000,
        # Any record we allow fits in one partition's share of a fetch, and a fetch brings at
        # most two record limits per broker: a consumer catching up buffers about one fetch of
        # its backlog, not every partition's limit (kafka-python's 50 MB default: +24 MB of RSS
        # at a 30,000-event backlog against +9 MB; BENCHMARKS.md, round 15). kafka-python keeps
        # one fetch in flight per broker and sends the next from the poll that opens the last
        # buffered one, so the work on that poll's records covers the round trip.
        "max_partition_fetch_bytes": limits.fetch_bytes,
        "fetch_max_bytes": 2 * limits.fetch_bytes,
        # How long the broker may hold an empty fetch: an idle consumer asks twice a second,
        # not fifty times (20 ms throughout cost an idle consumer about 7 % of a core on this
        # box). tansu answers a held fetch only at its next look (about half of the wait,
        # measured), so group members ask for 20 ms while records flow (infra.kafka_fetch_wait;
        # 500 ms throughout was most of issue 16's e2e lag).
        "fetch_max_wait_ms": 500,
        # Brokers may hold a group's first join for up to the session timeout (tansu: half
        # of it); the default 10 s keeps joins and failover quick and is a common production
        # value (CLIENTELE_KAFKA_SESSION_TIMEOUT_MS).
        "session_timeout_ms": get_settings().kafka_session_timeout_ms,
        "heartbeat_interval_ms": 1_000,
        "max_poll_interval_ms": 300_000,
        "allow_auto_create_topics": False,
    }
    settings.update(overrides)
    return KafkaConsumer(**settings)
