"""The stall bound of a :class:`GroupConsumer`: doubled after a rebuild that did not make
the member live again (a join longer than the bound is not cut short for good), back to
``stall_seconds`` once it is live."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import pytest

from infra.kafka_group import GroupConsumer
from tests.unit.test_fetch_wait import Consumer


@dataclass
class Member(Consumer):
    """A member that never hears from its group; ``records`` makes its next poll return one."""

    records: bool = False

    def poll(self, timeout_ms: int = 0) -> dict[Any, list[Any]]:
        return {"tp": ["record"]} if self.records else {}

    def subscribe(self, topics: list[str], listener: Any = None) -> None:
        pass

    def close(self, **_: Any) -> None:
        pass


def test_the_bound_doubles_per_rebuild_in_a_row_and_resets_when_live(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = [0.0]
    monkeypatch.setattr(time, "monotonic", lambda: clock[0])  # the module's clock
    made: list[Member] = []

    def make() -> Any:
        made.append(Member())
        return made[-1]

    member = GroupConsumer(make, "g", stall_seconds=25)
    member.subscribe(["t"])
    rebuilt_at = []
    for second in range(0, 400):
        clock[0] = float(second)
        before = member.rebuilds
        member.poll()
        if member.rebuilds > before:
            rebuilt_at.append(second)
    assert rebuilt_at == [25, 75, 125, 175, 225, 275, 325, 375]  # 25 s, then 50 s (at most)
    assert member.stall_bound == 50

    made[-1].records = True
    member.poll()  # live again
    assert member.stall_bound == 25
