"""Every way a broker loses what it acknowledged is told apart from a topic that kept it.

The relay compares what it recorded (identity, acknowledged end offsets) with the topic; the
consumers compare their stored offsets and the topic identity they count in. The whole kind:
topic gone, recreated (another topic id), another cluster, fewer partitions, offsets gone
backwards — and the look-alikes that are no loss.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import cast

import pytest
import typer

from api.cli.processes import run_process
from bootstrap import Services
from bootstrap.processes import Process
from consumers.consumer_offsets import Stored, losses
from consumers.relay_topic import Marks
from consumers.relay_topic import losses as relay_losses
from infra.kafka import PartitionCountMismatch
from infra.kafka_topics import Identity, TopicState

TOPIC = "customer.events"
SAME = Identity("cluster-a", "topic-1")


def state(
    ends: dict[int, int], cluster: str = "cluster-a", topic_id: str = "topic-1"
) -> TopicState:
    return TopicState(TOPIC, cluster, topic_id, ends)


def marks(ends: dict[int, int]) -> Marks:
    return Marks(TOPIC, SAME, dict(ends))


@pytest.mark.parametrize(
    ("found", "reason"),
    [
        (TopicState(TOPIC, "cluster-a", None), "is gone"),
        (state({0: 9, 1: 9}, topic_id="topic-2"), "topic id changed from topic-1 to topic-2"),
        (state({0: 9, 1: 9}, cluster="cluster-b"), "cluster id changed"),
        (state({0: 9}), "1 partitions, but offsets were acknowledged on partition 1"),
        (state({0: 9, 1: 2}), "partition 1 ends at offset 2, below the acknowledged 5"),
        (TopicState("other.events", "cluster-a", "topic-1", {0: 9, 1: 9}), "published to"),
    ],
)
def test_the_relay_notices_every_kind_of_loss(found: TopicState, reason: str) -> None:
    reasons = relay_losses(marks({0: 3, 1: 5}), found)
    assert any(reason in r for r in reasons), reasons


@pytest.mark.parametrize(
    "found",
    [
        state({0: 3, 1: 5}),  # exactly what was acknowledged
        state({0: 30, 1: 50, 2: 0}),  # more since, even a partition more
        state({0: 3, 1: 5}, cluster="", topic_id=""),  # a broker that gives no ids
    ],
)
def test_a_topic_that_kept_everything_is_no_loss(found: TopicState) -> None:
    assert relay_losses(marks({0: 3, 1: 5}), found) == []
    assert relay_losses(None, found) == []  # nothing recorded yet: nothing to miss


def test_consumers_notice_offsets_that_no_longer_count() -> None:
    group = Stored({0: 4, 1: 7, 2: 1}, {p: SAME for p in range(3)})
    assert losses(group, state({0: 4, 1: 7, 2: 1}), [0, 1, 2]) == []
    assert losses(group, TopicState(TOPIC, "cluster-a", None), [0]) == []  # wait: no topic
    recreated = losses(group, state({0: 9, 1: 9, 2: 9}, topic_id="topic-2"), [0, 1])
    assert recreated == ["topic id changed from topic-1 to topic-2 (topic recreated)"]
    assert losses(group, state({0: 9, 1: 9, 2: 9}, cluster="c2"), [2])[0].startswith(
        "cluster id changed"
    )
    shrunk = losses(group, state({0: 4, 1: 7}), [0, 1])
    assert shrunk == ["offsets stored for partition 2, the topic has 2 partitions"]
    rewound = losses(group, state({0: 0, 1: 7, 2: 1}), [0, 1, 2])
    assert rewound == ["partition 0: offset 4 is beyond its end 0"]
    moved_on = losses(group, state({0: 4, 1: 7, 2: 1}), [0], positions={0: 6})
    assert moved_on == ["partition 0: offset 6 is beyond its end 4"]


def test_an_offset_beyond_a_by_batch_end_counts_while_its_last_record_is_there() -> None:
    """tansu reports a partition's end as its last batch's first offset + 1."""
    group = Stored({0: 10, 1: 10}, {})
    asked: list[dict[int, int]] = []

    def missing(offsets: dict[int, int]) -> set[int]:
        asked.append(offsets)
        return {1}

    reasons = losses(group, state({0: 8, 1: 8}), [0, 1], missing=missing)
    assert asked == [{0: 10, 1: 10}]
    assert reasons == ["partition 1: offset 10 is beyond its end 8"]


def test_a_partition_count_mismatch_names_topic_found_and_expected() -> None:
    error = PartitionCountMismatch({"p.customer.events": 4, "p.customer.commands": 6}, 12)
    text = str(error)
    assert "topic 'p.customer.commands' has 6; topic 'p.customer.events' has 4" in text
    assert "partitions, expected 12 (CLIENTELE_KAFKA_PARTITIONS)" in text


def test_a_process_that_finds_the_mismatch_while_running_exits_2_saying_which(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Only start-up was covered: a mismatch the relay's periodic look finds (the Supervisor
    ends the loop: a configuration error) escaped as a traceback with exit 1."""
    monkeypatch.setenv("CLIENTELE_DATABASE_URL", f"sqlite:///{tmp_path / 'store.db'}")
    monkeypatch.setenv("CLIENTELE_API_KEYS_FILE", str(tmp_path / "keys.json"))

    class FindsTheMismatch:
        summary = "a process that meets a recreated topic"

        def run(self) -> None:
            raise PartitionCountMismatch({"p.customer.events": 4}, 12)

        def stop(self) -> None:
            """Nothing runs in the background."""

    @contextmanager
    def build_process(_: Services) -> Iterator[Process]:
        yield cast(Process, FindsTheMismatch())

    with pytest.raises(typer.Exit) as ended:
        run_process(build_process, needs_kafka=False)
    assert ended.value.exit_code == 2
    assert "topic 'p.customer.events' has 4 partitions, expected 12" in capsys.readouterr().err
