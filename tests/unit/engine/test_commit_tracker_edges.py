"""Contiguous commits at the edges: completions that come late or twice, revocations of
partitions never read, and errors that name the partition."""

from __future__ import annotations

import pytest

from lhpipe.runtime.commit import ContiguousCommitTracker, PartitionOffsets


def test_an_offset_out_of_read_order_is_refused_naming_the_partition() -> None:
    tracker = ContiguousCommitTracker()
    tracker.register("orders", 3, 9)
    with pytest.raises(ValueError) as info:
        tracker.register("orders", 3, 8)
    assert str(info.value) == (
        "orders[3]: offset 8 registered after 9; offsets must be registered in read order"
    )


def test_a_completion_after_every_record_is_done_changes_nothing() -> None:
    offsets = PartitionOffsets("t", 0)
    offsets.mark_done(3)  # nothing registered yet
    assert offsets.committable() is None
    offsets.register(4)
    offsets.mark_done(4)
    offsets.mark_done(4)  # again, with nothing left in flight
    offsets.mark_done(2)  # one from before this assignment's first record
    assert offsets.committable() == 5
    assert offsets.outstanding == 0


def test_an_older_commit_acknowledged_late_does_not_offer_the_offset_again() -> None:
    offsets = PartitionOffsets("t", 0)
    for o in (0, 1):
        offsets.register(o)
        offsets.mark_done(o)
    offsets.mark_committed(2)
    offsets.mark_committed(1)
    assert offsets.committable() is None


def test_revoking_partitions_never_read_returns_nothing_and_keeps_the_others() -> None:
    tracker = ContiguousCommitTracker()
    kept = tracker.register("t", 0, 5)
    kept.mark_done(5)
    assert tracker.revoke([("t", 1), ("other", 0)]) == {}
    assert tracker.partitions() == [("t", 0)]
    assert tracker.committable() == {("t", 0): 6}
