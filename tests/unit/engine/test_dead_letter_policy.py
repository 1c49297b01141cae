"""The permanent path (delivery.md): the envelope's limits, a dead-letter write that must be
retried or cannot be made, and what each policy counts and logs."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Iterator, Sequence

import pytest

from lhpipe.core.errors import PermanentError, TransientError
from lhpipe.core.metrics import REGISTRY
from lhpipe.core.record import KafkaOrigin, Record
from lhpipe.core.timestamps import epoch_ms_text
from lhpipe.runtime.delivery import (
    DeadLetterWriter,
    Failure,
    FailurePolicy,
    RecordFailed,
    envelope,
)

RECORD = Record(
    origin=KafkaOrigin("orders", 2, 41),
    key=b"k",
    value=b'{"id": 1}',
    headers=(("trace", b"\x01"),),
)
FAILURE = Failure(
    error=PermanentError("variable 'x' is not declared by WfSpec 'wf'", code="INVALID_ARGUMENT"),
    target="run_wf:wf",
    attempts=1,
    first_attempt_ms=1_764_311_595_123,
    last_attempt_ms=1_764_311_596_004,
)
DESCRIBED = (
    "run_wf:wf: permanent error INVALID_ARGUMENT: variable 'x' is not declared by WfSpec 'wf'"
)


class Bottom(random.Random):
    """Always draws the bottom of the jitter range: each delay is half its ceiling."""

    def random(self) -> float:
        return 0.0


class Sleeps:
    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)


class Producer:
    """Fails with the scripted errors in turn, then writes; keeps what was written."""

    def __init__(self, *errors: Exception) -> None:
        self.errors = list(errors)
        self.written: list[tuple[str, bytes | None, bytes | None]] = []

    async def __call__(
        self,
        topic: str,
        value: bytes | None,
        key: bytes | None,
        headers: Sequence[tuple[str, bytes | None]],
    ) -> None:
        if self.errors:
            raise self.errors.pop(0)
        self.written.append((topic, value, key))


def _writer(producer: Producer, sleeps: Sleeps | None = None) -> DeadLetterWriter:
    return DeadLetterWriter(
        pipeline="p", topic="p-dlq", produce=producer, sleep=sleeps or Sleeps(), rng=Bottom()
    )


def _failure_with(message: str) -> Failure:
    error = PermanentError(message, code="INVALID_ARGUMENT")
    return Failure(error, "run_wf:wf", 1, 0, 0)


# -- the envelope -----------------------------------------------------------------------------


def test_an_error_message_is_cut_to_4096_characters_ending_with_an_ellipsis() -> None:
    long = "".join(chr(ord("a") + i % 26) for i in range(5000))
    message = dict(envelope(RECORD, _failure_with(long), "p"))["lhpipe.error.message"]
    assert message.decode() == long[:4095] + "…"
    assert len(message.decode()) == 4096


def test_an_error_message_of_4096_characters_is_kept_whole() -> None:
    exact = "é" * 4096  # characters, not bytes, are counted
    message = dict(envelope(RECORD, _failure_with(exact), "p"))["lhpipe.error.message"]
    assert message == exact.encode("utf-8")


@pytest.fixture
def far_from_utc() -> Iterator[None]:
    """The machine's time zone at UTC+05:45 (a POSIX rule, no time zone database needed)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TZ", "NPT-5:45")
        time.tzset()
        try:
            yield
        finally:
            patch.undo()
            time.tzset()


def test_attempt_times_are_utc_whatever_the_machine_time_zone(far_from_utc: None) -> None:
    assert time.localtime(0).tm_hour == 5  # the zone took effect
    headers = dict(envelope(RECORD, FAILURE, "p"))
    assert headers["lhpipe.first.attempt"] == b"2025-11-28T06:33:15.123Z"
    assert headers["lhpipe.last.attempt"] == b"2025-11-28T06:33:16.004Z"
    assert epoch_ms_text(0) == "1970-01-01T00:00:00.000Z"


# -- writing a dead letter --------------------------------------------------------------------


def test_a_dead_letter_write_is_retried_with_the_default_backoff_and_each_retry_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    producer = Producer(
        *(TransientError("timed out", code="KAFKA_MSG_TIMED_OUT") for _ in range(3))
    )
    sleeps = Sleeps()
    with caplog.at_level(logging.WARNING, logger="lhpipe.runtime.delivery"):
        asyncio.run(_writer(producer, sleeps).write(RECORD, FAILURE))
    assert producer.written == [("p-dlq", RECORD.value, RECORD.key)]
    assert sleeps.delays == [0.05, 0.1, 0.2]
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [
        (
            logging.WARNING,
            f"pipeline p: writing a dead letter to 'p-dlq' failed (timed out); retrying in {d} s",
        )
        for d in ("0.05", "0.10", "0.20")
    ]


def test_a_dead_letter_write_that_fails_for_good_says_how_often_and_when_it_was_tried() -> None:
    producer = Producer(
        TransientError("timed out", code="KAFKA_MSG_TIMED_OUT"),
        TransientError("timed out", code="KAFKA_MSG_TIMED_OUT"),
        PermanentError("too large", code="KAFKA_MSG_SIZE_TOO_LARGE"),
    )
    before = time.time_ns() // 1_000_000
    with pytest.raises(RecordFailed) as info:
        asyncio.run(_writer(producer).write(RECORD, FAILURE))
    after = time.time_ns() // 1_000_000
    failure = info.value.failure
    assert (failure.target, failure.attempts) == ("dead_letter:p-dlq", 3)
    assert failure.error.code == "KAFKA_MSG_SIZE_TOO_LARGE"
    assert before <= failure.first_attempt_ms <= failure.last_attempt_ms <= after
    assert producer.written == []


# -- the policies: what they count and log ----------------------------------------------------


def _count(name: str, pipeline: str) -> float:
    return REGISTRY.get_sample_value(name, {"pipeline": pipeline}) or 0.0


def _policy(pipeline: str, producer: Producer | None, permanent: str = "stop") -> FailurePolicy:
    writer = None if producer is None else _writer(producer)
    return FailurePolicy(
        pipeline=pipeline,
        dead_letters=writer,
        permanent=permanent,  # type: ignore[arg-type]
    )


def _handle(
    policy: FailurePolicy, caplog: pytest.LogCaptureFixture
) -> tuple[str, Failure, list[tuple[int, str]], dict[str, float]]:
    names = ("lhpipe_records_dead_lettered_total", "lhpipe_records_skipped_total")
    start = {name: _count(name, policy.pipeline) for name in names}
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="lhpipe.runtime.delivery"):
        outcome, why = asyncio.run(policy.handle(RECORD, FAILURE))
    lines = [(r.levelno, r.getMessage()) for r in caplog.records]
    counted = {name: _count(name, policy.pipeline) - start[name] for name in names}
    return outcome, why, lines, counted


def test_a_dead_lettered_record_is_counted_and_logged_with_its_coordinates(
    caplog: pytest.LogCaptureFixture,
) -> None:
    outcome, why, lines, counted = _handle(_policy("dlq-ok", Producer()), caplog)
    assert (outcome, why) == ("acknowledge", FAILURE)
    assert lines == [
        (
            logging.WARNING,
            f"pipeline dlq-ok: record orders-2-41 dead-lettered to 'p-dlq': {DESCRIBED}",
        )
    ]
    assert counted == {"lhpipe_records_dead_lettered_total": 1, "lhpipe_records_skipped_total": 0}


def test_a_record_that_cannot_be_dead_lettered_is_logged_with_both_errors_and_not_counted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    producer = Producer(PermanentError("too large", code="KAFKA_MSG_SIZE_TOO_LARGE"))
    outcome, why, lines, counted = _handle(_policy("dlq-refused", producer), caplog)
    assert outcome == "stop"
    assert why.target == "dead_letter:p-dlq"
    assert lines == [
        (
            logging.ERROR,
            f"pipeline dlq-refused: record orders-2-41 failed ({DESCRIBED}) and could not be "
            "dead-lettered: dead_letter:p-dlq: permanent error KAFKA_MSG_SIZE_TOO_LARGE: too large",
        )
    ]
    assert counted == {"lhpipe_records_dead_lettered_total": 0, "lhpipe_records_skipped_total": 0}


def test_a_skipped_record_is_counted_and_logged_at_warning_with_its_coordinates(
    caplog: pytest.LogCaptureFixture,
) -> None:
    outcome, why, lines, counted = _handle(_policy("skipping", None, "skip"), caplog)
    assert (outcome, why) == ("acknowledge", FAILURE)
    assert lines == [
        (logging.WARNING, f"pipeline skipping: record orders-2-41 skipped: {DESCRIBED}")
    ]
    assert counted == {"lhpipe_records_dead_lettered_total": 0, "lhpipe_records_skipped_total": 1}


def test_a_stop_is_logged_as_an_error_at_the_record_and_counts_nothing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    outcome, why, lines, counted = _handle(_policy("stopping", None, "stop"), caplog)
    assert (outcome, why) == ("stop", FAILURE)
    assert lines == [
        (logging.ERROR, f"pipeline stopping: stopping at record orders-2-41: {DESCRIBED}")
    ]
    assert counted == {"lhpipe_records_dead_lettered_total": 0, "lhpipe_records_skipped_total": 0}
