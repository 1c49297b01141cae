"""The garbage collector's settings after start-up (lhpipe/core/heap.py)."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from lhpipe.core import heap


@pytest.fixture
def collector() -> Iterator[None]:
    """No automatic collection during the test (it would free cycles before the test looks),
    and the collector put back as it was afterwards, for the rest of the test run."""
    threshold = gc.get_threshold()
    enabled = gc.isenabled()
    gc.disable()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)
    if enabled:
        gc.enable()


class Node:
    def __init__(self) -> None:
        self.other: Node | None = None


@pytest.mark.usefixtures("collector")
def test_settle_freezes_what_is_alive_and_raises_the_young_threshold() -> None:
    kept = [object() for _ in range(10)]
    middle, oldest = gc.get_threshold()[1:]

    heap.settle()

    assert gc.get_freeze_count() > len(kept)
    assert gc.get_threshold() == (heap.YOUNG_THRESHOLD, middle, oldest)
    assert gc.get_count()[0] < 100  # nothing young left to collect


@pytest.mark.usefixtures("collector")
def test_settle_collects_garbage_cycles_first_and_again_when_called_again() -> None:
    def cycle() -> weakref.ref[Node]:
        a, b = Node(), Node()
        a.other, b.other = b, a
        return weakref.ref(a)

    unreachable = cycle()
    assert unreachable() is not None  # a cycle: reference counting alone does not free it
    heap.settle()
    frozen = gc.get_freeze_count()
    assert unreachable() is None  # collected, not frozen for good

    kept = [Node() for _ in range(50)]
    assert _tracked(kept) == len(kept)
    heap.settle()

    # Frozen: out of the generations the collector scans. (Not a count of frozen objects: a
    # thread left by another test may free some of its own between the two settles.)
    assert frozen > 0
    assert _tracked(kept) == 0


def _tracked(objects: list[Node]) -> int:
    """How many of ``objects`` are in the generations the collector scans (not frozen)."""
    scanned = {id(o) for o in gc.get_objects()}
    return sum(id(o) in scanned for o in objects)
