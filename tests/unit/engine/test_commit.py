"""Contiguous commits: a partition's offset passes only records that are all done."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lhpipe.runtime.commit import ContiguousCommitTracker, PartitionOffsets


def test_nothing_is_committable_before_the_first_record_finishes() -> None:
    offsets = PartitionOffsets("t", 0)
    offsets.register(5)
    offsets.register(6)
    assert offsets.committable() is None


def test_a_later_record_finishing_first_does_not_move_the_offset() -> None:
    offsets = PartitionOffsets("t", 0)
    for o in (10, 11, 12):
        offsets.register(o)
    offsets.mark_done(12)
    offsets.mark_done(11)
    assert offsets.committable() is None
    offsets.mark_done(10)
    assert offsets.committable() == 13


def test_the_offset_stops_at_the_first_record_not_done() -> None:
    offsets = PartitionOffsets("t", 0)
    for o in (0, 1, 2, 3):
        offsets.register(o)
    for o in (0, 1, 3):
        offsets.mark_done(o)
    assert offsets.committable() == 2
    assert offsets.outstanding == 2


def test_gaps_between_offsets_do_not_block_the_commit() -> None:
    # Compacted topics and transaction markers leave offsets that are never read.
    offsets = PartitionOffsets("t", 0)
    for o in (3, 7, 8):
        offsets.register(o)
    offsets.mark_done(3)
    offsets.mark_done(7)
    assert offsets.committable() == 8


def test_a_committed_offset_is_not_offered_again() -> None:
    offsets = PartitionOffsets("t", 0)
    offsets.register(0)
    offsets.mark_done(0)
    assert offsets.committable() == 1
    offsets.mark_committed(1)
    assert offsets.committable() is None
    offsets.register(1)
    offsets.mark_done(1)
    assert offsets.committable() == 2


def test_a_duplicate_completion_changes_nothing() -> None:
    offsets = PartitionOffsets("t", 0)
    offsets.register(0)
    offsets.register(1)
    offsets.mark_done(0)
    offsets.mark_done(0)
    assert offsets.committable() == 1
    assert offsets.outstanding == 1


def test_offsets_must_be_registered_in_read_order() -> None:
    offsets = PartitionOffsets("t", 0)
    offsets.register(4)
    with pytest.raises(ValueError, match="read order"):
        offsets.register(4)


def test_the_tracker_reports_only_partitions_that_moved() -> None:
    tracker = ContiguousCommitTracker()
    a = tracker.register("t", 0, 0)
    tracker.register("t", 1, 0)
    a.mark_done(0)
    assert tracker.committable() == {("t", 0): 1}
    tracker.mark_committed({("t", 0): 1})
    assert tracker.committable() == {}


def test_a_record_of_an_earlier_assignment_cannot_move_the_new_one() -> None:
    tracker = ContiguousCommitTracker()
    old = tracker.register("t", 0, 40)
    assert tracker.revoke([("t", 0)]) == {}
    new = tracker.register("t", 0, 40)
    old.mark_done(40)  # finished after the partition was revoked and assigned again
    assert tracker.committable() == {}
    new.mark_done(40)
    assert tracker.committable() == {("t", 0): 41}


def test_revoking_returns_what_is_done_and_forgets_the_partition() -> None:
    tracker = ContiguousCommitTracker()
    offsets = tracker.register("t", 2, 7)
    tracker.register("t", 2, 8)
    offsets.mark_done(7)
    assert tracker.revoke([("t", 2)]) == {("t", 2): 8}
    assert tracker.partitions() == []


@settings(deadline=None)  # a loaded CI machine can take longer than the default 200 ms
@given(
    st.lists(st.integers(min_value=1, max_value=5), min_size=1, max_size=60).flatmap(
        lambda gaps: st.tuples(st.just(gaps), st.permutations(range(len(gaps))))
    ),
    st.data(),
)
def test_the_offset_is_always_one_past_the_done_prefix(
    case: tuple[list[int], list[int]], data: st.DataObject
) -> None:
    gaps, order = case
    read = []
    position = 0
    for gap in gaps:
        position += gap
        read.append(position)
    offsets = PartitionOffsets("t", 0)
    for o in read:
        offsets.register(o)
    # Finish a random prefix of a random completion order; commit at random moments.
    finished = data.draw(st.integers(min_value=0, max_value=len(order)))
    done: set[int] = set()
    for index in order[:finished]:
        offsets.mark_done(read[index])
        done.add(read[index])
        if data.draw(st.booleans()) and (offset := offsets.committable()) is not None:
            offsets.mark_committed(offset)
    prefix = 0
    while prefix < len(read) and read[prefix] in done:
        prefix += 1
    expected = read[prefix - 1] + 1 if prefix else None
    assert offsets.next_offset == expected
    assert offsets.outstanding == len(read) - prefix
