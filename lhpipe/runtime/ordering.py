"""Bounded concurrency with per-key order: many records in flight, one at a time per key.

Records are submitted in read order with a *chain* key (for Kafka, the partition and the record
key). Records of the same chain run strictly one after another, in submission order; records of
different chains run in parallel, at most ``limit`` at once. A record without a chain (no key)
orders with nothing.

The scheduler runs a small pool of worker tasks, not one task per record: a worker takes the
next ready record, processes it, then continues with the next record of the same chain if one
waits (keeping the chain's order without another hand-off), else with the next ready record.
Workers exist only while there is work, so an idle pipeline costs nothing.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

#: The default ceiling of a pipeline's records in flight (``LHPIPE_MAX_IN_FLIGHT``): pipelines
#: with a LittleHorse or ``to http`` target find their limit below it (:mod:`.limit`).
DEFAULT_MAX_IN_FLIGHT = 512
#: The limit of pipelines whose targets do not adapt (Kafka, files, the log), or the ceiling
#: when that is lower.
FIXED_LIMIT = 64

T = TypeVar("T")

log = logging.getLogger(__name__)


class KeyOrderedScheduler(Generic[T]):
    """Runs ``work(item)`` for submitted items, at most ``limit`` at once, in order per chain.

    ``work`` must handle its own failures: an exception escaping it is logged and the item
    counts as finished, so a bug never wedges a chain.
    """

    def __init__(self, work: Callable[[T], Awaitable[None]], limit: int = FIXED_LIMIT):
        if limit < 1:
            raise ValueError("the concurrency limit must be at least 1")
        self._work = work
        self.limit = limit
        # A chain is present while one of its items is running or ready; the deque holds the
        # items waiting behind that one.
        self._chains: dict[Hashable, deque[T]] = {}
        self._ready: deque[tuple[T, Hashable | None]] = deque()
        self._running = 0
        # Workers still looping; counted apart from the task set because a task that has left
        # its loop stays in the set until its done-callback runs, and must not be relied on.
        self._looping = 0
        self._workers: set[asyncio.Task[None]] = set()
        self._idle = asyncio.Event()
        self._idle.set()

    @property
    def running(self) -> int:
        """Items being processed now."""
        return self._running

    @property
    def queued(self) -> int:
        """Items submitted and not started: ready ones and ones waiting behind their chain."""
        return len(self._ready) + sum(len(waiting) for waiting in self._chains.values())

    def submit(self, item: T, chain: Hashable | None) -> None:
        """Schedule ``item`` after every earlier item of ``chain``."""
        if chain is not None:
            waiting = self._chains.get(chain)
            if waiting is not None:
                waiting.append(item)
                return
            self._chains[chain] = deque()
        self._ready.append((item, chain))
        self._idle.clear()
        if self._looping < self.limit:
            self._start_worker()

    def set_limit(self, limit: int) -> None:
        """Change how many items may run at once (an adaptive limit moved). A lower limit takes
        effect as running items finish (their workers stop taking new chains); a higher one
        starts workers for the ready items at once."""
        if limit < 1:
            raise ValueError("the concurrency limit must be at least 1")
        self.limit = limit
        while self._looping < limit and self._looping < self._running + len(self._ready):
            self._start_worker()

    def _start_worker(self) -> None:
        self._looping += 1
        task = asyncio.get_running_loop().create_task(self._worker())
        self._workers.add(task)
        task.add_done_callback(self._workers.discard)

    def discard(self, matches: Callable[[T], bool]) -> list[T]:
        """Remove queued (not running) items for which ``matches`` is true; returns them.

        A removed chain head hands its place to the first remaining item of its chain.
        """
        removed: list[T] = []
        for waiting in self._chains.values():
            kept = deque(item for item in waiting if not matches(item))
            if len(kept) != len(waiting):
                removed.extend(item for item in waiting if matches(item))
                waiting.clear()
                waiting.extend(kept)
        ready: deque[tuple[T, Hashable | None]] = deque()
        for item, chain in self._ready:
            if not matches(item):
                ready.append((item, chain))
                continue
            removed.append(item)
            if chain is not None:
                waiting = self._chains[chain]
                if waiting:
                    ready.append((waiting.popleft(), chain))
                else:
                    del self._chains[chain]
        self._ready = ready
        self._check_idle()
        return removed

    def cancel(self) -> None:
        """Abandon everything: drop queued items and cancel the running ones (a drain whose
        deadline passed; the abandoned records are redelivered later)."""
        self._ready.clear()
        self._chains.clear()
        for task in list(self._workers):
            task.cancel()

    async def wait_idle(self) -> None:
        """Return once nothing is running or queued."""
        await self._idle.wait()

    async def _worker(self) -> None:
        try:
            await self._drain()
        finally:
            self._looping -= 1
            self._check_idle()

    async def _drain(self) -> None:
        chains = self._chains
        # A worker leaves when the limit was lowered below the workers looping.
        while self._ready and self._looping <= self.limit:
            item, chain = self._ready.popleft()
            while True:
                self._running += 1
                try:
                    await self._work(item)
                except Exception:
                    log.exception("record processing failed unexpectedly")
                finally:
                    self._running -= 1
                if chain is None:
                    break
                waiting = chains.get(chain)
                if waiting:
                    item = waiting.popleft()
                    continue
                chains.pop(chain, None)
                break

    def _check_idle(self) -> None:
        if not self._looping and not self._ready and not self._chains:
            self._idle.set()
