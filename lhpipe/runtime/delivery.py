"""The delivery policy, written once for every target (delivery.md, "Errors").

A :class:`Delivery` wraps one target's sender. Each failed attempt is classified by the error
tree of :mod:`lhpipe.core.errors`:

- **transient**: the same plan (same id, guid or key) is sent again after an exponential
  backoff: the pipeline's ``backoff`` (default 100 ms) doubling up to 30 s, each delay jittered
  down by up to half so that many records retrying together spread out. Unbounded unless
  ``retry = N``: after N retries the last error counts as permanent. The per-call deadline is the
  sender's own.
- **paused**: the pipeline's source is paused and the pipeline reports itself unhealthy while
  the record retries slowly (5 s doubling to 30 s); it is never dead-lettered.
- **permanent**: :class:`RecordFailed` is raised with a :class:`Failure` describing it, and
  :class:`FailurePolicy` decides: with ``dead_letter`` the original record goes to that topic
  with the error envelope, then it is acknowledged; otherwise ``permanent = stop`` stops the
  pipeline (the record is not acknowledged, so its offset stays) and ``permanent = skip`` logs,
  counts and acknowledges it.

Decode and expression errors before any target are permanent failures too, labelled with the
stage that failed (``decode``, ``where``, ``let``) or the target whose plan could not be made.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from lhpipe.core import metrics
from lhpipe.core.errors import DeliveryError, PausedError, PermanentError, TransientError
from lhpipe.core.plans import Plan
from lhpipe.core.record import KafkaOrigin, Record
from lhpipe.core.senders import ALREADY_EXISTS, Sender
from lhpipe.core.timestamps import epoch_ms_text
from lhpipe.runtime.limit import OVERLOAD_CODES, AdaptiveLimit

log = logging.getLogger(__name__)

DEFAULT_BACKOFF_SECONDS = 0.1
MAX_BACKOFF_SECONDS = 30.0
PAUSED_FIRST_DELAY_SECONDS = 5.0
PAUSED_MAX_DELAY_SECONDS = 30.0
# Dead-letter headers stay well under Kafka's record size limits even for huge messages.
MAX_ERROR_MESSAGE_CHARS = 4096

Sleep = Callable[[float], Awaitable[None]]
Produce = Callable[
    [str, bytes | None, bytes | None, Sequence[tuple[str, bytes | None]]], Awaitable[None]
]


def backoff_delay(retry: int, base: float, cap: float, rng: random.Random) -> float:
    """The delay before retry number ``retry`` (0 for the first): ``base`` doubled ``retry``
    times, capped at ``cap``, then jittered down by up to half."""
    ceiling = min(cap, base * (1 << min(retry, 32)))
    return ceiling / 2 + rng.random() * ceiling / 2


def now_ms() -> int:
    """Wall-clock time in epoch milliseconds."""
    return time.time_ns() // 1_000_000


@dataclass(frozen=True, slots=True)
class Failure:
    """Why one record could not be delivered: the error (permanent, or the last transient one
    when ``retry`` ran out), the target or stage it happened in, and the attempts made."""

    error: DeliveryError
    target: str
    attempts: int
    first_attempt_ms: int
    last_attempt_ms: int

    def describe(self) -> str:
        return f"{self.target}: {self.error.error_class} error {self.error.code}: {self.error}"


class RecordFailed(Exception):
    """A record failed for good at one target or stage; carries the :class:`Failure`."""

    def __init__(self, failure: Failure) -> None:
        super().__init__(failure.describe())
        self.failure = failure


def failed(error: DeliveryError, target: str) -> RecordFailed:
    """A failure at a stage with a single attempt (decode, steps, planning)."""
    at = now_ms()
    return RecordFailed(Failure(error, target, 1, at, at))


class PauseControl(Protocol):
    """The pipeline's side of a paused-class error: hold the source while any record waits."""

    def enter_pause(self, detail: str) -> None: ...

    def leave_pause(self) -> None: ...


def classify(exc: Exception) -> DeliveryError:
    """An exception from a sender in the error tree: the tree's own classes as they are,
    network-level exceptions as transient, anything else (a bug) as permanent."""
    if isinstance(exc, DeliveryError):
        return exc
    if isinstance(exc, OSError | TimeoutError):
        return TransientError(f"{type(exc).__name__}: {exc}", code="NETWORK")
    return PermanentError(f"unexpected {type(exc).__name__}: {exc}", code="UNEXPECTED")


class Delivery:
    """One target of one pipeline: a sender with the error policy around it."""

    def __init__(
        self,
        *,
        pipeline: str,
        target: str,
        sender: Sender,
        pauses: PauseControl | None = None,
        retry: int | None = None,
        backoff: float = DEFAULT_BACKOFF_SECONDS,
        sleep: Sleep = asyncio.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self.pipeline = pipeline
        self.target = target
        self.sender = sender
        #: Who is told about paused-class errors; the pipeline's runner binds itself here.
        self.pauses = pauses
        self._retry = retry
        self._backoff = backoff
        self._sleep = sleep
        self._rng = rng or random.Random()
        #: The pipeline's adaptive concurrency limit, told of this target's answer times and
        #: overloads; the runner binds it when the sender is :attr:`adaptive`.
        self.limit: AdaptiveLimit | None = None
        #: Whether the sender's answer times say how loaded its server is (LittleHorse,
        #: ``to http``): a sender says so with a true ``adaptive`` attribute.
        self.adaptive = bool(getattr(sender, "adaptive", False))
        #: Records retrying at this target now, and the last error seen, for the status.
        self.retrying = 0
        self.last_error: str | None = None
        self._out = metrics.RECORDS_OUT.labels(pipeline, target)
        self._latency = metrics.TARGET_LATENCY.labels(pipeline, target)
        self._retries = metrics.RETRIES.labels(pipeline, target)
        self._already = metrics.ALREADY_EXISTS.labels(pipeline, target)

    def healthy(self) -> bool:
        """The sender is connected and no record is retrying here."""
        return self.retrying == 0 and self.sender.connected()

    async def deliver(self, plan: Plan) -> None:
        """Send ``plan`` until it is accepted; raises :class:`RecordFailed` when it fails for
        good (permanent, or ``retry`` exhausted)."""
        started = time.monotonic()
        try:
            outcome = await self.sender.send(plan)
        except Exception as exc:
            # The wall clock of the first attempt, read only when there is a failure to date.
            first_ms = now_ms() - int((time.monotonic() - started) * 1000)
            outcome = await self._retry_until_done(plan, classify(exc), first_ms)
            took = time.monotonic() - started
        else:
            took = time.monotonic() - started
            if (limit := self.limit) is not None:
                limit.sample(took)
        self._out.inc()
        if outcome == ALREADY_EXISTS:
            self._already.inc()
        self._latency.observe(took)

    async def _retry_until_done(
        self, plan: Plan, error: DeliveryError, first_ms: int
    ) -> str | None:
        attempts = 1
        transient_retries = 0
        paused_retries = 0
        paused = False
        self.retrying += 1
        try:
            while True:
                metrics.RECORDS_FAILED.labels(self.pipeline, self.target, error.error_class).inc()
                self.last_error = f"{error.error_class} error {error.code}: {error}"
                if isinstance(error, PausedError):
                    if not paused and self.pauses is not None:
                        paused = True
                        self.pauses.enter_pause(f"{self.target}: {self.last_error}")
                    delay = backoff_delay(
                        paused_retries,
                        PAUSED_FIRST_DELAY_SECONDS,
                        PAUSED_MAX_DELAY_SECONDS,
                        self._rng,
                    )
                    paused_retries += 1
                elif isinstance(error, TransientError):
                    if self.limit is not None and error.code in OVERLOAD_CODES:
                        self.limit.overload()
                    if self._retry is not None and transient_retries >= self._retry:
                        gave_up = _gave_up(error, transient_retries)
                        raise RecordFailed(
                            Failure(gave_up, self.target, attempts, first_ms, now_ms())
                        )
                    delay = backoff_delay(
                        transient_retries, self._backoff, MAX_BACKOFF_SECONDS, self._rng
                    )
                    # A server that says when to come back (HTTP Retry-After) is believed
                    # when it asks for longer, within the backoff's cap.
                    hint = getattr(error, "retry_after", None)
                    if isinstance(hint, int | float):
                        delay = min(max(delay, float(hint)), MAX_BACKOFF_SECONDS)
                    transient_retries += 1
                else:
                    raise RecordFailed(Failure(error, self.target, attempts, first_ms, now_ms()))
                # The first failure of a record is worth a line; the rest of its retries are
                # in the metrics (an outage would otherwise log every record every round).
                log.log(
                    logging.INFO if attempts == 1 else logging.DEBUG,
                    "pipeline %s: %s: %s; retrying in %.2f s (attempt %d)",
                    self.pipeline,
                    self.target,
                    self.last_error,
                    delay,
                    attempts,
                )
                await self._sleep(delay)
                self._retries.inc()
                attempts += 1
                try:
                    return await self.sender.send(plan)
                except Exception as exc:
                    error = classify(exc)
        finally:
            self.retrying -= 1
            if self.retrying == 0:
                self.last_error = None
            if paused and self.pauses is not None:
                self.pauses.leave_pause()


@dataclass(frozen=True, slots=True)
class TargetStage:
    """One target of a pipeline: its label, its compiled planner and its delivery."""

    label: str
    planner: Callable[[Mapping[str, Any], Record], Plan]
    delivery: Delivery


async def plan_and_deliver(
    targets: Sequence[TargetStage], env: Mapping[str, Any], record: Record
) -> None:
    """Plan every target first, so that an expression failing in one target sends nothing for
    any, then deliver the plans in declaration order. Failures come out as
    :class:`RecordFailed` labelled with the target."""
    if len(targets) == 1:  # the common case, without the list
        target = targets[0]
        try:
            plan = target.planner(env, record)
        except Exception as exc:
            raise failed(classify(exc), target.label) from exc
        await target.delivery.deliver(plan)
        return
    plans = []
    for target in targets:
        try:
            plans.append((target.delivery, target.planner(env, record)))
        except Exception as exc:
            raise failed(classify(exc), target.label) from exc
    for delivery, plan in plans:
        await delivery.deliver(plan)


async def run_record(
    record: Record,
    key: Any,
    value: Any,
    initial_env: Callable[[Record, Any, Any], dict[str, Any]],
    steps: Callable[[dict[str, Any]], dict[str, Any] | None],
    targets: Sequence[TargetStage],
    dropped: Any,
) -> None:
    """One decoded record through a pipeline, the same for a runner's Kafka record and a
    direct-mode webhook request: its first names, the steps (a failure there is the
    ``steps`` stage's), then every target (:func:`plan_and_deliver`); a record the steps drop
    counts in ``dropped`` (a Prometheus counter) and is done."""
    try:
        env = steps(initial_env(record, key, value))
    except Exception as exc:
        raise failed(classify(exc), "steps") from exc
    if env is None:
        dropped.inc()
        return
    await plan_and_deliver(targets, env, record)


def _gave_up(error: TransientError, retries: int) -> PermanentError:
    """The last transient error as a permanent one (delivery.md: once ``retry = N`` ran out it
    "counts as permanent"), its code kept and its message saying that the retries ran out."""
    return PermanentError(f"{error.message} (gave up after {retries} retries)", code=error.code)


# ---------------------------------------------------------------------------------------------
# Dead letters and the stop/skip policy
# ---------------------------------------------------------------------------------------------


def envelope(record: Record, failure: Failure, pipeline: str) -> list[tuple[str, bytes]]:
    """The error envelope of delivery.md as Kafka headers (UTF-8 values)."""
    message = str(failure.error)
    if len(message) > MAX_ERROR_MESSAGE_CHARS:
        message = message[: MAX_ERROR_MESSAGE_CHARS - 1] + "…"
    fields = [
        ("lhpipe.error.class", failure.error.error_class),
        ("lhpipe.error.message", message),
        ("lhpipe.error.code", failure.error.code),
        ("lhpipe.pipeline", pipeline),
        ("lhpipe.target", failure.target),
        ("lhpipe.attempts", str(failure.attempts)),
        ("lhpipe.first.attempt", epoch_ms_text(failure.first_attempt_ms)),
        ("lhpipe.last.attempt", epoch_ms_text(failure.last_attempt_ms)),
    ]
    origin = record.origin
    if isinstance(origin, KafkaOrigin):
        fields += [
            ("lhpipe.source.topic", origin.topic),
            ("lhpipe.source.partition", str(origin.partition)),
            ("lhpipe.source.offset", str(origin.offset)),
        ]
    else:
        fields.append(("lhpipe.source.webhook.id", origin.id))
    return [(name, value.encode()) for name, value in fields]


class DeadLetterWriter:
    """Writes a failed record, byte for byte with its original headers, plus the envelope,
    to the pipeline's dead-letter topic. Transient Kafka errors are retried with backoff
    until the write succeeds; a permanent one raises :class:`RecordFailed`."""

    def __init__(
        self,
        *,
        pipeline: str,
        topic: str,
        produce: Produce,
        sleep: Sleep = asyncio.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self.pipeline = pipeline
        self.topic = topic
        self._produce = produce
        self._sleep = sleep
        self._rng = rng or random.Random()

    async def write(self, record: Record, failure: Failure) -> None:
        headers = [*record.headers, *envelope(record, failure, self.pipeline)]
        retries = 0
        first_ms = now_ms()
        while True:
            try:
                await self._produce(self.topic, record.value, record.key, headers)
                return
            except Exception as exc:
                error = classify(exc)
                if not isinstance(error, TransientError):
                    target = f"dead_letter:{self.topic}"
                    raise RecordFailed(
                        Failure(error, target, retries + 1, first_ms, now_ms())
                    ) from exc
                delay = backoff_delay(
                    retries, DEFAULT_BACKOFF_SECONDS, MAX_BACKOFF_SECONDS, self._rng
                )
                log.warning(
                    "pipeline %s: writing a dead letter to %r failed (%s); retrying in %.2f s",
                    self.pipeline,
                    self.topic,
                    error,
                    delay,
                )
                retries += 1
                await self._sleep(delay)


Outcome = Literal["acknowledge", "stop"]


class FailurePolicy:
    """What happens to a record that failed for good: dead letter, skip, or stop."""

    def __init__(
        self,
        *,
        pipeline: str,
        dead_letters: DeadLetterWriter | None,
        permanent: Literal["stop", "skip"],
    ) -> None:
        self.pipeline = pipeline
        self._dead_letters = dead_letters
        self._permanent = permanent
        self._dead_lettered = metrics.RECORDS_DEAD_LETTERED.labels(pipeline)
        self._skipped = metrics.RECORDS_SKIPPED.labels(pipeline)

    async def handle(self, record: Record, failure: Failure) -> tuple[Outcome, Failure]:
        """``("acknowledge", failure)`` when the record may be acknowledged (dead-lettered or
        skipped), ``("stop", why)`` when the pipeline must stop with the record unacknowledged
        (``why`` is the dead-letter write's failure when that is what failed)."""
        where = record.origin.coordinates()
        if self._dead_letters is not None:
            try:
                await self._dead_letters.write(record, failure)
            except RecordFailed as exc:
                log.error(
                    "pipeline %s: record %s failed (%s) and could not be dead-lettered: %s",
                    self.pipeline,
                    where,
                    failure.describe(),
                    exc.failure.describe(),
                )
                return "stop", exc.failure
            self._dead_lettered.inc()
            log.warning(
                "pipeline %s: record %s dead-lettered to %r: %s",
                self.pipeline,
                where,
                self._dead_letters.topic,
                failure.describe(),
            )
            return "acknowledge", failure
        if self._permanent == "skip":
            self._skipped.inc()
            log.warning(
                "pipeline %s: record %s skipped: %s", self.pipeline, where, failure.describe()
            )
            return "acknowledge", failure
        log.error(
            "pipeline %s: stopping at record %s: %s", self.pipeline, where, failure.describe()
        )
        return "stop", failure
