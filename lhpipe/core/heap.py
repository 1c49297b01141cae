"""The garbage collector's settings for a long-running engine process.

CPython's cyclic collector runs a full collection whenever the objects promoted to its oldest
generation since the last one reach a quarter of those already there. Start-up leaves tens of
thousands of long-lived objects there (the checked program, grammars, protobuf descriptors,
clients), and under webhook load the objects of requests in flight keep being promoted, so a full
collection over all of them ran every few seconds and took 22 to 40 ms on the development machine
(290 ms once, on a busy one): a stall of every request in flight, and alone enough to put the
p99 at 1,000 requests/s above 25 ms (performance.md).

:func:`settle` moves what is alive once start-up is over into the permanent generation, which
the collector never scans (the objects are still freed by reference counting; only unreachable
cycles among them stay), and raises the youngest generation's threshold from 700 to
:data:`YOUNG_THRESHOLD` allocations, so that a request's short-lived objects are mostly freed
before a collection sees (and promotes) them. A collection of the youngest generation then scans
at most that many objects: well under a millisecond.
"""

from __future__ import annotations

import gc
from typing import Final

#: Container allocations (net of frees) between two collections of the youngest generation.
YOUNG_THRESHOLD: Final = 10_000


def settle() -> None:
    """Collect what start-up (or a reload) left as garbage, then freeze what is alive and set
    :data:`YOUNG_THRESHOLD`. Calling it again first unfreezes, so the objects of a replaced
    program do not stay frozen forever."""
    gc.unfreeze()
    gc.collect()
    gc.freeze()
    _, middle, oldest = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, middle, oldest)
