"""The per-key scheduler's edges: how many items run, abandoning everything at a drain's
deadline, discarding queued items, and what a failing item leaves in the log."""

from __future__ import annotations

import asyncio
import logging

import pytest

from lhpipe.runtime.ordering import KeyOrderedScheduler


class Held:
    """Work that runs until the test releases its item; records starts, finishes and
    cancellations, and how many items the scheduler reported running at each start."""

    def __init__(self) -> None:
        self.scheduler: KeyOrderedScheduler[int] | None = None
        self.release: dict[int, asyncio.Event] = {}
        self.started: list[int] = []
        self.finished: list[int] = []
        self.cancelled: list[int] = []
        self.running_at_start: list[int] = []

    async def __call__(self, item: int) -> None:
        assert self.scheduler is not None
        self.started.append(item)
        self.running_at_start.append(self.scheduler.running)
        try:
            await self.release.setdefault(item, asyncio.Event()).wait()
        except asyncio.CancelledError:
            self.cancelled.append(item)
            raise
        self.finished.append(item)

    def let_go(self, item: int) -> None:
        self.release.setdefault(item, asyncio.Event()).set()


def _scheduler(limit: int) -> tuple[KeyOrderedScheduler[int], Held]:
    work = Held()
    scheduler = KeyOrderedScheduler(work, limit=limit)
    work.scheduler = scheduler
    return scheduler, work


async def _turns(n: int = 5) -> None:
    for _ in range(n):
        await asyncio.sleep(0)


def test_running_counts_the_items_being_processed() -> None:
    async def scenario() -> tuple[int, list[int], int, int]:
        scheduler, work = _scheduler(limit=3)
        before = scheduler.running
        for item, chain in [(1, "a"), (2, "b"), (3, None), (4, "a")]:
            scheduler.submit(item, chain)
        await _turns()
        during = scheduler.running
        for item in (1, 2, 3, 4):
            work.let_go(item)
        await asyncio.wait_for(scheduler.wait_idle(), 5)
        return before, work.running_at_start, during, scheduler.running

    before, at_start, during, after = asyncio.run(scenario())
    assert before == 0
    # 1, 2 and 3 start together; 4 waits behind 1 and starts once 1 is done.
    assert at_start == [1, 2, 3, 3]
    assert during == 3
    assert after == 0


def test_cancel_drops_queued_items_and_cancels_running_ones() -> None:
    async def scenario() -> tuple[Held, int]:
        scheduler, work = _scheduler(limit=2)
        for item, chain in [(1, "a"), (2, "a"), (3, "b"), (4, "c")]:
            scheduler.submit(item, chain)
        await _turns()
        scheduler.cancel()
        await asyncio.wait_for(scheduler.wait_idle(), 5)
        return work, scheduler.running

    work, running = asyncio.run(scenario())
    assert work.started == [1, 3]
    assert sorted(work.cancelled) == [1, 3]
    assert work.finished == []
    assert running == 0


def test_discard_keeps_every_ready_item_it_does_not_match_in_order() -> None:
    async def scenario() -> tuple[list[int], int, Held]:
        scheduler, work = _scheduler(limit=1)
        for item, chain in [(1, "a"), (2, "b"), (3, "c"), (4, "d"), (5, None)]:
            scheduler.submit(item, chain)
        await _turns()  # 1 runs; 2 to 5 wait for the one slot
        removed = scheduler.discard(lambda item: item == 4)
        queued = scheduler.queued
        for item in (1, 2, 3, 5):
            work.let_go(item)
        await asyncio.wait_for(scheduler.wait_idle(), 5)
        return removed, queued, work

    removed, queued, work = asyncio.run(scenario())
    assert removed == [4]
    assert queued == 3
    assert work.finished == [1, 2, 3, 5]


def test_an_item_that_raises_is_logged_with_its_traceback_and_nothing_else_is(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def work(item: int) -> None:
        if item == 1:
            raise RuntimeError("bug in the pipeline")

    async def scenario() -> None:
        scheduler = KeyOrderedScheduler(work, limit=2)
        for item in (1, 2, 3):
            scheduler.submit(item, "k" if item < 3 else None)
        await asyncio.wait_for(scheduler.wait_idle(), 5)
        await _turns()  # let the finished workers' callbacks run

    with caplog.at_level(logging.DEBUG):
        asyncio.run(scenario())
    errors = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert [(r.name, r.getMessage()) for r in errors] == [
        ("lhpipe.runtime.ordering", "record processing failed unexpectedly")
    ]
    assert errors[0].exc_info is not None
    assert isinstance(errors[0].exc_info[1], RuntimeError)


@pytest.mark.parametrize("limit", [0, -1])
def test_a_limit_under_one_is_refused(limit: int) -> None:
    with pytest.raises(ValueError) as info:
        KeyOrderedScheduler(Held(), limit=limit)
    assert str(info.value) == "the concurrency limit must be at least 1"
