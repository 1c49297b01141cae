"""Per-key order with bounded concurrency."""

from __future__ import annotations

import asyncio
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lhpipe.runtime.ordering import KeyOrderedScheduler


class Recorder:
    """A work function that records start order, finish order and peak concurrency, and
    finishes each item after a scripted number of event-loop turns."""

    def __init__(self, turns: dict[int, int] | None = None) -> None:
        self.turns = turns or {}
        self.started: list[int] = []
        self.finished: list[int] = []
        self.running = 0
        self.peak = 0

    async def __call__(self, item: int) -> None:
        self.started.append(item)
        self.running += 1
        self.peak = max(self.peak, self.running)
        for _ in range(self.turns.get(item, 1)):
            await asyncio.sleep(0)
        self.running -= 1
        self.finished.append(item)


async def _run(scheduler: KeyOrderedScheduler[int], items: list[tuple[int, str | None]]) -> None:
    for item, chain in items:
        scheduler.submit(item, chain)
    await asyncio.wait_for(scheduler.wait_idle(), 5)


def test_items_of_one_key_run_one_after_another_in_order() -> None:
    # The first item is the slowest: a scheduler without per-key order would finish 2 first.
    work = Recorder({1: 10, 2: 1, 3: 1})
    scheduler = KeyOrderedScheduler(work, limit=8)
    asyncio.run(_run(scheduler, [(1, "k"), (2, "k"), (3, "k")]))
    assert work.finished == [1, 2, 3]
    assert work.peak == 1


def test_different_keys_run_in_parallel() -> None:
    work = Recorder({1: 10, 2: 1})
    scheduler = KeyOrderedScheduler(work, limit=8)
    asyncio.run(_run(scheduler, [(1, "a"), (2, "b")]))
    assert work.finished == [2, 1]
    assert work.peak == 2


def test_items_without_a_key_order_with_nothing() -> None:
    work = Recorder({1: 10})
    scheduler = KeyOrderedScheduler(work, limit=8)
    asyncio.run(_run(scheduler, [(1, None), (2, None), (3, None)]))
    assert work.finished == [2, 3, 1]


def test_no_more_than_the_limit_run_at_once() -> None:
    work = Recorder({i: 3 for i in range(100)})
    scheduler = KeyOrderedScheduler(work, limit=7)
    asyncio.run(_run(scheduler, [(i, str(i)) for i in range(100)]))
    assert work.peak == 7
    assert sorted(work.finished) == list(range(100))


def test_a_failing_item_does_not_block_its_key() -> None:
    seen: list[int] = []

    async def work(item: int) -> None:
        seen.append(item)
        if item == 1:
            raise RuntimeError("bug")

    scheduler = KeyOrderedScheduler(work, limit=2)
    asyncio.run(_run(scheduler, [(1, "k"), (2, "k")]))
    assert seen == [1, 2]


def test_discarded_items_never_run_and_their_key_goes_on() -> None:
    work = Recorder({1: 5})

    async def scenario() -> list[int]:
        scheduler = KeyOrderedScheduler(work, limit=1)
        for item, chain in [(1, "a"), (2, "b"), (3, "b"), (4, "c"), (5, "a")]:
            scheduler.submit(item, chain)
        await asyncio.sleep(0)  # item 1 starts; the rest wait for the one slot
        removed = scheduler.discard(lambda item: item in (2, 5))
        await asyncio.wait_for(scheduler.wait_idle(), 5)
        return removed

    removed = asyncio.run(scenario())
    assert sorted(removed) == [2, 5]
    assert work.finished == [1, 3, 4]


def test_the_limit_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        KeyOrderedScheduler(Recorder(), limit=0)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(["a", "b", "c", "d", None]), st.integers(1, 6)),
        min_size=1,
        max_size=80,
    ),
    st.integers(min_value=1, max_value=10),
)
def test_random_workloads_keep_per_key_order_and_the_limit(
    spec: list[tuple[str | None, int]], limit: int
) -> None:
    work = Recorder({i: turns for i, (_, turns) in enumerate(spec)})
    scheduler = KeyOrderedScheduler(work, limit=limit)
    items = [(i, chain) for i, (chain, _) in enumerate(spec)]

    async def scenario() -> None:
        rng = random.Random(len(spec))
        # Submit in a few bursts, with the loop turning between them.
        for item, chain in items:
            scheduler.submit(item, chain)
            if rng.random() < 0.2:
                await asyncio.sleep(0)
        await asyncio.wait_for(scheduler.wait_idle(), 5)

    asyncio.run(scenario())
    assert sorted(work.finished) == [i for i, _ in items]
    assert work.peak <= limit
    for key in ("a", "b", "c", "d"):
        of_key = [i for i, chain in items if chain == key]
        assert [i for i in work.started if i in of_key] == of_key
        assert [i for i in work.finished if i in of_key] == of_key
