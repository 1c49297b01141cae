"""An adaptive concurrency limit: how many records a pipeline sends at once, found from the
target's own answers rather than guessed (docs/delivery.md, "Concurrency").

The right number of calls in flight depends on the server, the network and the work each call
starts: too few leave the server idle between calls, too many only queue at the server and add
latency. :class:`AdaptiveLimit` follows the gradient algorithm of Netflix's concurrency-limits
library (``Gradient2Limit``), in lhpipe's own words:

- Calls are measured in *windows* of at least :data:`MIN_WINDOW_SAMPLES` answers and at least
  the current limit (about one round trip of every slot). A window's mean latency is the
  *short* latency; an exponential average over windows (:data:`LONG_WINDOWS` of them) is the
  *long* one, the server's latency at its usual load.
- The gradient ``tolerance * long / short`` (held between 0.5 and 1) says whether calls got
  slower than usual: 1 while they are no more than ``tolerance`` times slower, less when the
  server starts queueing. The new limit is ``limit * gradient + sqrt(limit)`` (the square root is a
  small queue that lets the limit grow while latency holds), smoothed (:data:`SMOOTHING`).
- An *overload* answer (LittleHorse's ``RESOURCE_EXHAUSTED``, HTTP 429 or 503, a call's
  deadline or timeout) ends the window at once and multiplies the limit by
  :data:`BACKOFF_RATIO`, as TCP does on a lost packet.
- It starts the way TCP does (*slow start*): while answers stay within the tolerance, each
  window doubles the limit; the first window slower than that, or the first overload, ends
  slow start for good and the gradient takes over. So a pipeline finds a fast server's
  capacity in a few round trips instead of growing by a square root per window.
- A window in which fewer than half the slots were used says nothing about the server (the
  pipeline had too little to send): the limit stays.
- When the long latency is more than twice the short one (the server got faster, or the long
  average still remembers a slow spell), the long one decays toward the short one, so that a
  burst of slowness is not held against the server for ever.

The limit stays between ``floor`` and ``ceiling`` (``LHPIPE_MAX_IN_FLIGHT``) and starts at
``initial`` (:data:`INITIAL_LIMIT`, or the ceiling when that is lower). Every change is handed
to ``on_change`` as a whole number (the runner's scheduler takes it as its worker limit).

Everything here runs on the event loop's thread; :meth:`AdaptiveLimit.sample` costs a few
additions per answer.
"""

from __future__ import annotations

import math
from collections.abc import Callable

#: Where the limit starts (lhpipe's fixed limit before it adapted).
INITIAL_LIMIT = 64
#: The fewest answers a window has.
MIN_WINDOW_SAMPLES = 20
#: How much slower than the long latency calls may get before the limit shrinks.
TOLERANCE = 1.5
#: The weight of a window's new limit against the current one.
SMOOTHING = 0.2
#: How many windows the long latency averages over.
LONG_WINDOWS = 50
#: The limit's factor after an overload answer.
BACKOFF_RATIO = 0.9

#: Error codes that mean the target is overloaded (the limit backs off): LittleHorse's gRPC
#: status names, and ``to http``'s statuses and timeout (:mod:`lhpipe.targets.to_http_sender`).
OVERLOAD_CODES = frozenset(
    {"RESOURCE_EXHAUSTED", "DEADLINE_EXCEEDED", "HTTP_429", "HTTP_503", "HTTP_TIMEOUT"}
)


class AdaptiveLimit:
    """A pipeline's adaptive in-flight limit; see the module docstring. ``in_flight`` reads how
    many records are being processed now (the scheduler's count)."""

    def __init__(
        self,
        ceiling: int,
        in_flight: Callable[[], int],
        *,
        initial: int = INITIAL_LIMIT,
        floor: int = 1,
        on_change: Callable[[int], None] | None = None,
    ) -> None:
        if ceiling < 1:
            raise ValueError("the ceiling must be at least 1")
        self.ceiling = ceiling
        self.floor = max(1, min(floor, ceiling))
        self._estimate = float(max(self.floor, min(initial, ceiling)))
        self.limit = int(self._estimate)
        self._in_flight = in_flight
        self._on_change = on_change
        self._long: float | None = None
        self._samples = 0
        self._total = 0.0
        self._busiest = 0
        #: Doubling per window until the first slow window or overload (see above).
        self.slow_start = True
        #: Windows closed and overloads seen, for the tests and the status.
        self.windows = 0
        self.overloads = 0

    def sample(self, latency: float) -> None:
        """An answer that took ``latency`` seconds (a first attempt that succeeded)."""
        self._samples += 1
        self._total += latency
        busy = self._in_flight()
        if busy > self._busiest:
            self._busiest = busy
        if self._samples >= MIN_WINDOW_SAMPLES and self._samples >= self.limit:
            self._close_window()

    def overload(self) -> None:
        """The target answered that it is overloaded: back off at once."""
        self.overloads += 1
        self.slow_start = False
        self._reset_window()
        self._set(self._estimate * BACKOFF_RATIO)

    def _close_window(self) -> None:
        short = self._total / self._samples
        used = self._busiest
        self._reset_window()
        self.windows += 1
        if short <= 0.0:
            return
        long = self._long
        if long is None:
            self._long = short
            return
        long += (short - long) * (2.0 / (LONG_WINDOWS + 1))
        if long > 2 * short:
            long = long * 0.95 + short * 0.05
        self._long = long
        if used * 2 < self._estimate:
            return  # too little to send to learn anything about the target
        gradient = max(0.5, min(1.0, TOLERANCE * long / short))
        estimate = self._estimate
        if self.slow_start:
            if gradient >= 1.0:
                self._set(estimate * 2)
                return
            self.slow_start = False
        wanted = estimate * gradient + math.sqrt(estimate)
        self._set(estimate * (1 - SMOOTHING) + wanted * SMOOTHING)

    def _reset_window(self) -> None:
        self._samples = 0
        self._total = 0.0
        self._busiest = 0

    def _set(self, estimate: float) -> None:
        self._estimate = max(float(self.floor), min(float(self.ceiling), estimate))
        limit = int(self._estimate)
        if limit != self.limit:
            self.limit = limit
            if self._on_change is not None:
                self._on_change(limit)
