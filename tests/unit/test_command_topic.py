"""Coordinate keys of the commands topic never collide across topic instances."""

from __future__ import annotations

from pathlib import Path

from consumers.command_topic import TopicInstances
from consumers.ingest import read_command
from infra.readstore import open_read_store

TOPIC = "p.customer.commands"


def test_the_first_instance_keeps_todays_keys_and_later_ones_carry_their_epoch(
    tmp_path: Path,
) -> None:
    read_store = open_read_store(f"sqlite:///{tmp_path / 'read.db'}")
    try:
        instances = TopicInstances(read_store, TOPIC)
        assert instances.coordinates("id-a", 3, 17) == f"kafka:{TOPIC}:3:17"  # as before
        assert instances.coordinates(None, 3, 17) == f"kafka:{TOPIC}:3:17"  # no topic ids
        assert instances.coordinates("id-b", 3, 17) == f"kafka:{TOPIC}#1:3:17"
        assert instances.coordinates("id-c", 3, 17) == f"kafka:{TOPIC}#2:3:17"
        assert instances.coordinates("id-a", 0, 0) == f"kafka:{TOPIC}:0:0"

        # Another process (or a restart) numbers the instances alike; other topics apart.
        again = TopicInstances(read_store, TOPIC)
        assert [again.epoch(i) for i in ("id-c", "id-a", "id-b", "id-d")] == [2, 0, 1, 3]
        assert TopicInstances(read_store, "other").epoch("id-b") == 0
    finally:
        read_store.close()


def test_a_key_with_an_epoch_is_a_valid_idempotency_key() -> None:
    key, command = read_command(b'{"type": "register", "name": "Ada"}', f"kafka:{TOPIC}#4:1:0")
    assert key == f"kafka:{TOPIC}#4:1:0"
    assert getattr(command, "idempotency_key", None) == key


def test_without_a_read_store_epochs_are_kept_in_memory() -> None:
    instances = TopicInstances(None, TOPIC)
    assert [instances.epoch(i) for i in ("x", "y", "x", "z")] == [0, 1, 0, 2]
