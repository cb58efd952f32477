"""A group join that completes between two polls is kept, not sent again.

kafka-python 3.0.12 runs a consumer's JoinGroup/SyncGroup round as a task on its network
thread, awaited by ``poll`` for at most the poll's timeout. A round that completes while the
caller is outside ``poll`` (working on a batch, looking at the topic) is dropped at the next
poll, which sends a new JoinGroup: tansu holds each one for half the session timeout (5 s),
so a loop that works every few seconds could miss round after round and not join for a minute
(the group-consumer tests did so under load, each join round dropped as it completed).

:func:`keep_finished_joins` makes the next poll apply a round that succeeded meanwhile, as if
it had been awaiting it. Applied by :mod:`infra.kafka` when imported.
"""

from __future__ import annotations

from typing import Any

from kafka.coordinator.base import BaseCoordinator
from kafka.structs import MemberState

_FINISHED = "_clientele_finished_round"


def keep_finished_joins() -> None:
    """Patch kafka-python's coordinator (once; idempotent): a join round that succeeded while
    no poll awaited it is applied by the next poll instead of being sent again."""
    if getattr(BaseCoordinator, _FINISHED, False):
        return
    join_group = BaseCoordinator.join_group_async
    join_and_sync = BaseCoordinator._do_join_and_sync_async

    async def join_group_async(self: Any, timeout_ms: int | None = None) -> Any:
        finished = self._join_task
        if (
            finished is not None
            and finished.succeeded()
            and self.rejoining
            and self.state == MemberState.REBALANCING  # nothing reset the member since
        ):
            # kafka-python starts a new round here: that round returns this one's assignment
            self.__dict__[_FINISHED] = finished.value
        try:
            return await join_group(self, timeout_ms)
        finally:  # never handed to a later round
            self.__dict__.pop(_FINISHED, None)

    async def do_join_and_sync_async(self: Any) -> Any:
        if _FINISHED in self.__dict__:
            return self.__dict__.pop(_FINISHED)
        return await join_and_sync(self)

    BaseCoordinator.join_group_async = join_group_async
    BaseCoordinator._do_join_and_sync_async = do_join_and_sync_async
    setattr(BaseCoordinator, _FINISHED, True)
