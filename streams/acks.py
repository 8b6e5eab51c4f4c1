"""Never commit a message no agent has taken: Faust acks the messages its streams skip at a rebalance.

Since faust-streaming's fix for prefetched events (faust-streaming/faust#221, PR #223), a stream skips a
message fetched under an older consumer generation, or delivered while the flow is suspended, and then
*acks* it "so the lag does not grow" (``Stream._py_aiter``). An ack makes the offset committable, so a
batch that sat in a stream buffer when a second worker joined is committed without having been judged,
and nobody reads it again: on a two-worker run of the clean stage, a whole first fetch (5,000 pings of
one partition) vanished this way.

The stream marks a message ``tracked`` when it really hands it to an agent, before the agent can ack it;
a skipped message never gets there. So an ack of an untracked message of an acking topic is refused here:
its offset stays uncommitted and the partition's owner reads it again from the committed offset, which is
what a skip must mean under at-least-once.
"""

from __future__ import annotations

from typing import Any

from faust.transport.consumer import Consumer

_faust_ack = Consumer.ack


def ack(self: Consumer, message: Any) -> bool:
    """Mark a message processed, unless no stream ever handed it to an agent (a skip at a rebalance)."""
    if not message.tracked and self.app.topics.acks_enabled_for(message.topic):
        return False
    return bool(_faust_ack(self, message))


def install() -> None:
    """Guard the acks of every Faust consumer of the process."""
    Consumer.ack = ack  # type: ignore[method-assign]
