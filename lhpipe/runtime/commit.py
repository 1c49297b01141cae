"""Contiguous offset commits: a partition's offset moves only past records that are all done.

Records of a partition are processed concurrently and finish in any order, but Kafka keeps one
committed offset per partition: committing offset ``n`` says every record before ``n`` is
handled. So each partition keeps the offsets it handed out, in read order, and its next offset
to commit is one past the longest prefix of them that is done. Offsets need not be consecutive
(compaction and transaction markers leave gaps): only the ones actually read count.

Each assignment of a partition gets a fresh :class:`PartitionOffsets`; a record holds the one it
was registered with, so a record that finishes after its partition was revoked (and perhaps
assigned again) cannot move the new assignment's offset.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable

from lhpipe.core.sink import TopicPartition


class PartitionOffsets:
    """The offsets read from one partition during one assignment, and which are done.

    :meth:`register` must be called in read order (increasing offsets); :meth:`mark_done` in
    any order. Both are O(1) amortised: finished offsets at the head are dropped as the
    committable position passes them.
    """

    __slots__ = ("_done", "_pending", "committed", "next_offset", "partition", "topic")

    def __init__(self, topic: str, partition: int) -> None:
        self.topic = topic
        self.partition = partition
        self._pending: deque[int] = deque()
        self._done: set[int] = set()
        #: The offset to commit: one past the last record of the done prefix (``None`` before
        #: any record finished).
        self.next_offset: int | None = None
        #: The last offset actually committed to Kafka for this assignment.
        self.committed: int | None = None

    def register(self, offset: int) -> None:
        """Record that ``offset`` was read and is being processed."""
        if self._pending and offset <= self._pending[-1]:
            raise ValueError(
                f"{self.topic}[{self.partition}]: offset {offset} registered after "
                f"{self._pending[-1]}; offsets must be registered in read order"
            )
        self._pending.append(offset)

    def mark_done(self, offset: int) -> None:
        """Record that ``offset`` is handled (delivered, dead-lettered, skipped or dropped)."""
        pending = self._pending
        if not pending or offset < pending[0]:
            return  # already past it: a duplicate completion changes nothing
        if offset != pending[0]:
            self._done.add(offset)
            return
        pending.popleft()
        last = offset
        done = self._done
        while pending and pending[0] in done:
            last = pending.popleft()
            done.discard(last)
        self.next_offset = last + 1

    @property
    def outstanding(self) -> int:
        """Records registered and not yet committable (in flight, waiting, or done after a
        record that is not)."""
        return len(self._pending)

    def committable(self) -> int | None:
        """The offset to commit now, if it moved since the last :meth:`mark_committed`."""
        if self.next_offset is None or self.next_offset == self.committed:
            return None
        return self.next_offset

    def mark_committed(self, offset: int) -> None:
        """Kafka accepted ``offset`` as this partition's committed offset."""
        if self.committed is None or offset > self.committed:
            self.committed = offset


class ContiguousCommitTracker:
    """Every assigned partition's :class:`PartitionOffsets`, for one consumer.

    The consumer calls :meth:`assign` and :meth:`revoke` from its rebalance callbacks, the
    runner registers records as they are read and marks them done as they finish, and the
    committer asks :meth:`committable` for what to commit.
    """

    def __init__(self) -> None:
        self._partitions: dict[TopicPartition, PartitionOffsets] = {}

    def assign(self, topic: str, partition: int) -> PartitionOffsets:
        """Start tracking a newly assigned partition (a fresh tracker each assignment)."""
        offsets = PartitionOffsets(topic, partition)
        self._partitions[(topic, partition)] = offsets
        return offsets

    def get(self, topic: str, partition: int) -> PartitionOffsets | None:
        """The current assignment's offsets of a partition, if assigned."""
        return self._partitions.get((topic, partition))

    def register(self, topic: str, partition: int, offset: int) -> PartitionOffsets:
        """Register a read record; assigns the partition first if it is not tracked yet."""
        offsets = self._partitions.get((topic, partition))
        if offsets is None:
            offsets = self.assign(topic, partition)
        offsets.register(offset)
        return offsets

    def revoke(self, partitions: Iterable[TopicPartition]) -> dict[TopicPartition, int]:
        """Stop tracking ``partitions``; returns what is still committable for them (commit it
        before the rebalance completes)."""
        result: dict[TopicPartition, int] = {}
        for tp in partitions:
            offsets = self._partitions.pop(tp, None)
            if offsets is not None and (offset := offsets.committable()) is not None:
                result[tp] = offset
        return result

    def committable(self) -> dict[TopicPartition, int]:
        """Per partition, the next offset to commit, for partitions whose offset moved."""
        return {
            tp: offset
            for tp, offsets in self._partitions.items()
            if (offset := offsets.committable()) is not None
        }

    def mark_committed(self, offsets: dict[TopicPartition, int]) -> None:
        """Kafka accepted these offsets."""
        for tp, offset in offsets.items():
            tracked = self._partitions.get(tp)
            if tracked is not None:
                tracked.mark_committed(offset)

    def outstanding(self) -> int:
        """Records registered and not yet committable, over every partition."""
        return sum(p.outstanding for p in self._partitions.values())

    def partitions(self) -> list[TopicPartition]:
        """The partitions tracked now."""
        return list(self._partitions)
