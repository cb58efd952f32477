"""The producers' partitioner picks exactly the partition kafka-python's default (the Java
client's murmur2) picks, for every key, on kafka-python's own cluster metadata; it only
remembers key hashes."""

from __future__ import annotations

import random
from uuid import UUID

import pytest
from kafka.cluster import ClusterMetadata
from kafka.partitioner import DefaultPartitioner
from kafka.protocol.metadata import MetadataResponse

from infra.kafka import KeyHashPartitioner

Topic = MetadataResponse.MetadataResponseTopic
Partition = Topic.MetadataResponsePartition
VERSION = 9  # of the metadata response


def cluster(partitions: dict[str, list[int]]) -> ClusterMetadata:
    """kafka-python's metadata, filled from a metadata response naming these partitions."""
    broker = MetadataResponse.MetadataResponseBroker(
        node_id=0, host="127.0.0.1", port=9092, rack=None, version=VERSION
    )
    topics = [
        Topic(
            version=VERSION,
            error_code=0,
            name=name,
            is_internal=False,
            partitions=[
                Partition(
                    version=VERSION,
                    error_code=0,
                    partition_index=index,
                    leader_id=0,
                    leader_epoch=0,
                    replica_nodes=[0],
                    isr_nodes=[0],
                    offline_replicas=[],
                )
                for index in indexes
            ],
        )
        for name, indexes in partitions.items()
    ]
    metadata = ClusterMetadata()
    response = MetadataResponse(
        version=VERSION,
        throttle_time_ms=0,
        brokers=[broker],
        cluster_id="c",
        controller_id=0,
        topics=topics,
    )
    metadata.update_metadata(response)
    return metadata


def keys(rng: random.Random) -> list[bytes]:
    customers = [str(UUID(int=rng.getrandbits(128), version=4)).encode() for _ in range(3000)]
    other = [rng.randbytes(rng.randint(0, 70)) for _ in range(1000)]
    return customers + other + ["kundin-ä-🎉".encode()] + customers[:500]  # hits of the cache


@pytest.mark.parametrize("count", [1, 2, 3, 12, 50, 97])
def test_same_partition_as_kafka_pythons_default_for_many_keys(count: int) -> None:
    metadata = cluster({"t": list(range(count)), "gaps": [0, 2, 5, 9][: max(1, count % 5)]})
    ours, default = KeyHashPartitioner(keys=1024), DefaultPartitioner()
    for key in keys(random.Random(count)):
        for topic in ("t", "gaps"):
            assert ours.partition(topic, None, key, None, b"v", metadata) == default.partition(
                topic, None, key, None, b"v", metadata
            )
    assert ours.hash.cache_info().hits >= 1000  # the cache was used, and not only filled


def test_records_without_a_key_and_unknown_topics_are_handled_as_by_the_default() -> None:
    metadata = cluster({"t": list(range(12))})
    ours = KeyHashPartitioner()
    assert {ours.partition("t", None, None, None, b"v", metadata) for _ in range(200)} <= set(
        range(12)
    )
    for partitioner in (ours, DefaultPartitioner()):
        with pytest.raises(ValueError, match="not found"):
            partitioner.partition("missing", None, b"k", None, b"v", metadata)
