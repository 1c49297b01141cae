"""Timing for the in-process benchmarks: lhpipe's operation and the bare one it wraps, timed
in turn in the same run (performance.md), and one printed line per comparison."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

#: Times ``number`` calls of one side of a comparison, in seconds.
Side = Callable[[int], Awaitable[float]]


def plain(call: Callable[[], object]) -> Side:
    """A side that calls ``call``."""

    async def timing(number: int) -> float:
        start = time.perf_counter()
        for _ in range(number):
            call()
        return time.perf_counter() - start

    return timing


def awaited(call: Callable[[], Awaitable[object]]) -> Side:
    """A side that awaits ``call()`` (the event loop's own cost included)."""

    async def timing(number: int) -> float:
        start = time.perf_counter()
        for _ in range(number):
            await call()
        return time.perf_counter() - start

    return timing


async def best_us(number: int, repeat: int, *sides: Side) -> list[float]:
    """The best time of one call of each side, in microseconds; the sides are timed in turn,
    ``repeat`` times, so that they see the same load on the machine."""
    best = [float("inf")] * len(sides)
    for _ in range(repeat):
        for i, side in enumerate(sides):
            best[i] = min(best[i], await side(number))
    return [seconds / number * 1e6 for seconds in best]


def show(what: str, lhpipe_us: float, bare: str | None = None, bare_us: float = 0.0) -> None:
    """One line: lhpipe's time, then the bare operation's and the ratio of the two."""
    line = f"{what:<34} {lhpipe_us:8.2f} us"
    if bare is not None:
        line += f"   {bare:<34} {bare_us:8.2f} us   x{lhpipe_us / bare_us:.2f}"
    print(line)


def show_header() -> None:
    """The titles of the columns :func:`show` prints."""
    print(f"{'lhpipe':<46}   {'bare operation, same run':<46}   ratio")
