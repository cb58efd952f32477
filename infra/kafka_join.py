"""A group join that completes between two polls is kept, not sent again.

kafka-python 3.0.12 runs a consumer's JoinGroup/SyncGroup round as a task on its network
thread, awaited by ``poll`` for at most the poll's timeout. A round that completes while the
caller is outside ``poll`` (working on a batch, looking at the topic) is dropped at the next
poll, which sends a new JoinGroup: tansu holds each one for half the session timeout (5 s),
so a loop that works every few seconds could miss round after round and not join for a minute
(the group-consumer tests did so under load, each join round dropped as it completed).

:func:`keep_finished_joins` makes the next poll apply a round that succeeded meanwhile, as if
it had been awaiting it, while the broker still holds the member's session: heartbeats are
off from the JoinGroup until a round is applied, so a round older than the session timeout
(less one heartbeat interval) may belong to a generation the broker has ended, and is sent
again as before. Applied by :mod:`infra.kafka` when imported.
"""

from __future__ import annotations

import functools
import time
from typing import Any

from kafka.coordinator.base import BaseCoordinator
from kafka.structs import MemberState

_PATCHED = "_clientele_keeps_finished_joins"  # on the class: applied once
_KEPT = "_clientele_kept_round"  # on a coordinator: the round the next attempt returns
_DONE_AT = "_clientele_round_done_at"  # on a coordinator: when its last round succeeded


def keep_finished_joins() -> None:
    """Patch kafka-python's coordinator (once; idempotent): a join round that succeeded while
    no poll awaited it, within the member's session, is applied by the next poll instead of
    being sent again."""
    if getattr(BaseCoordinator, _PATCHED, False):
        return
    join_group = BaseCoordinator.join_group_async
    join_and_sync = BaseCoordinator._do_join_and_sync_async

    @functools.wraps(join_group)
    async def join_group_async(self: Any, timeout_ms: int | None = None) -> Any:
        finished = getattr(self, "_join_task", None)
        if finished is not None and finished.succeeded() and _in_session(self):
            # kafka-python starts a new round here: that round returns this one's assignment
            self.__dict__[_KEPT] = finished.value
        try:
            return await join_group(self, timeout_ms)
        finally:  # never handed to a later round
            self.__dict__.pop(_KEPT, None)

    @functools.wraps(join_and_sync)
    async def do_join_and_sync_async(self: Any) -> Any:
        kept = self.__dict__.pop(_KEPT, None)
        if kept is not None and _in_session(self):  # nothing reset the member meanwhile
            return kept
        value = await join_and_sync(self)
        self.__dict__[_DONE_AT] = time.monotonic()
        return value

    BaseCoordinator.join_group_async = join_group_async
    BaseCoordinator._do_join_and_sync_async = do_join_and_sync_async
    setattr(BaseCoordinator, _PATCHED, True)


def _in_session(coordinator: Any) -> bool:
    """The member is still joining (nothing reset it) and its last round succeeded recently
    enough that the broker holds its session (less one heartbeat interval of margin)."""
    if not coordinator.rejoining or coordinator.state != MemberState.REBALANCING:
        return False
    config = coordinator.config
    bound: float = (config["session_timeout_ms"] - config["heartbeat_interval_ms"]) / 1000
    done_at: float = coordinator.__dict__.get(_DONE_AT, float("-inf"))
    return time.monotonic() - done_at < bound
