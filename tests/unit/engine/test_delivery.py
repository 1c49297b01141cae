"""The delivery policy: retries, pauses, dead letters with the envelope, stop and skip."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence

import pytest

from lhpipe.core.errors import (
    BadIdError,
    PausedError,
    PermanentError,
    TransientError,
)
from lhpipe.core.plans import LogPlan, Plan
from lhpipe.core.record import KafkaOrigin, Record, WebhookOrigin
from lhpipe.core.timestamps import epoch_ms_text
from lhpipe.runtime.delivery import (
    DeadLetterWriter,
    Delivery,
    Failure,
    FailurePolicy,
    RecordFailed,
    backoff_delay,
    envelope,
)

PLAN = LogPlan(value={"n": 1})
RECORD = Record(
    origin=KafkaOrigin("orders", 2, 41),
    key=b"\x00k\xff",
    value=b'{"not": "decoded"}\xfe',
    headers=(("trace", b"\x01\x02"), ("trace", b"again"), ("empty", None)),
)


class ScriptedSender:
    """Fails with the scripted errors in turn, then accepts; records every plan sent."""

    def __init__(self, *errors: Exception) -> None:
        self.errors = list(errors)
        self.sent: list[Plan] = []

    async def send(self, plan: Plan) -> None:
        self.sent.append(plan)
        if self.errors:
            raise self.errors.pop(0)

    async def close(self) -> None:
        return None

    def connected(self) -> bool:
        return True


class Pauses:
    def __init__(self) -> None:
        self.events: list[str] = []

    def enter_pause(self, detail: str) -> None:
        self.events.append(f"pause: {detail}")

    def leave_pause(self) -> None:
        self.events.append("resume")


class Sleeps:
    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)


def _delivery(sender: ScriptedSender, **kwargs: object) -> tuple[Delivery, Pauses, Sleeps]:
    pauses, sleeps = Pauses(), Sleeps()
    delivery = Delivery(
        pipeline="p",
        target="run_wf:wf",
        sender=sender,
        pauses=pauses,
        sleep=sleeps,
        rng=random.Random(7),
        **kwargs,  # type: ignore[arg-type]
    )
    return delivery, pauses, sleeps


def test_transient_errors_are_retried_with_the_same_plan_until_accepted() -> None:
    sender = ScriptedSender(TransientError("down", code="UNAVAILABLE"), TransientError("down"))
    delivery, pauses, sleeps = _delivery(sender)
    asyncio.run(delivery.deliver(PLAN))
    assert sender.sent == [PLAN, PLAN, PLAN]
    assert len(sleeps.delays) == 2
    assert pauses.events == []
    assert delivery.retrying == 0


def test_backoff_starts_at_the_configured_delay_and_doubles_to_the_cap() -> None:
    rng = random.Random(1)
    delays = [backoff_delay(n, 0.25, 30.0, rng) for n in range(12)]
    for n, delay in enumerate(delays):
        ceiling = min(30.0, 0.25 * 2**n)
        assert ceiling / 2 <= delay <= ceiling
    assert max(delays) <= 30.0


def test_the_backoff_setting_sets_the_first_delay() -> None:
    sender = ScriptedSender(TransientError("down"))
    delivery, _, sleeps = _delivery(sender, backoff=2.0)
    asyncio.run(delivery.deliver(PLAN))
    assert 1.0 <= sleeps.delays[0] <= 2.0


def test_retry_bounds_transient_retries_then_the_record_fails() -> None:
    sender = ScriptedSender(*(TransientError("down", code="UNAVAILABLE") for _ in range(5)))
    delivery, _, sleeps = _delivery(sender, retry=2)
    with pytest.raises(RecordFailed) as info:
        asyncio.run(delivery.deliver(PLAN))
    failure = info.value.failure
    assert len(sender.sent) == 3  # the first attempt and two retries
    assert len(sleeps.delays) == 2
    assert failure.attempts == 3
    assert failure.error.code == "UNAVAILABLE"
    assert "gave up after 2 retries" in str(failure.error)
    assert failure.error.error_class == "permanent"  # delivery.md: it then counts as permanent
    assert failure.target == "run_wf:wf"


def test_a_permanent_error_fails_at_once_without_retrying() -> None:
    sender = ScriptedSender(BadIdError("bad id 'a b'"))
    delivery, _, sleeps = _delivery(sender)
    with pytest.raises(RecordFailed) as info:
        asyncio.run(delivery.deliver(PLAN))
    assert len(sender.sent) == 1
    assert sleeps.delays == []
    assert info.value.failure.error.code == "BAD_ID"
    assert info.value.failure.attempts == 1


def test_a_paused_error_pauses_the_pipeline_retries_slowly_and_resumes() -> None:
    sender = ScriptedSender(
        PausedError("no parent", code="FAILED_PRECONDITION"),
        PausedError("no parent", code="FAILED_PRECONDITION"),
        PausedError("no parent", code="FAILED_PRECONDITION"),
    )
    delivery, pauses, sleeps = _delivery(sender, retry=1)
    asyncio.run(delivery.deliver(PLAN))
    # Paused errors never count against `retry` and never fail the record.
    assert len(sender.sent) == 4
    assert pauses.events == [
        "pause: run_wf:wf: paused error FAILED_PRECONDITION: no parent",
        "resume",
    ]
    assert all(delay >= 2.5 for delay in sleeps.delays)


def test_an_unexpected_exception_is_permanent_and_a_network_one_transient() -> None:
    sender = ScriptedSender(ConnectionResetError("reset"), KeyError("bug"))
    delivery, _, _ = _delivery(sender)
    with pytest.raises(RecordFailed) as info:
        asyncio.run(delivery.deliver(PLAN))
    assert len(sender.sent) == 2
    assert info.value.failure.error.code == "UNEXPECTED"


def test_the_target_is_unhealthy_while_a_record_retries() -> None:
    health: list[bool] = []

    class Probe(ScriptedSender):
        async def send(self, plan: Plan) -> None:
            health.append(delivery.healthy())
            await super().send(plan)

    sender = Probe(TransientError("down"))
    delivery, _, _ = _delivery(sender)
    asyncio.run(delivery.deliver(PLAN))
    assert health == [True, False]
    assert delivery.healthy()


# -- dead letters ---------------------------------------------------------------------------


class RecordingProducer:
    def __init__(self, *errors: Exception) -> None:
        self.errors = list(errors)
        self.records: list[
            tuple[str, bytes | None, bytes | None, list[tuple[str, bytes | None]]]
        ] = []

    async def __call__(
        self,
        topic: str,
        value: bytes | None,
        key: bytes | None,
        headers: Sequence[tuple[str, bytes | None]],
    ) -> None:
        if self.errors:
            raise self.errors.pop(0)
        self.records.append((topic, value, key, list(headers)))


FAILURE = Failure(
    error=PermanentError("variable 'x' is not declared by WfSpec 'wf'", code="INVALID_ARGUMENT"),
    target="run_wf:wf",
    attempts=1,
    first_attempt_ms=1_764_311_595_123,
    last_attempt_ms=1_764_311_596_004,
)


def test_a_dead_letter_keeps_the_record_byte_for_byte_and_adds_the_envelope() -> None:
    producer = RecordingProducer()
    writer = DeadLetterWriter(pipeline="p", topic="p-dlq", produce=producer, sleep=Sleeps())
    asyncio.run(writer.write(RECORD, FAILURE))
    [(topic, value, key, headers)] = producer.records
    assert (topic, value, key) == ("p-dlq", RECORD.value, RECORD.key)
    assert headers[:3] == list(RECORD.headers)
    assert dict(headers[3:]) == {
        "lhpipe.error.class": b"permanent",
        "lhpipe.error.message": b"variable 'x' is not declared by WfSpec 'wf'",
        "lhpipe.error.code": b"INVALID_ARGUMENT",
        "lhpipe.pipeline": b"p",
        "lhpipe.target": b"run_wf:wf",
        "lhpipe.attempts": b"1",
        "lhpipe.first.attempt": b"2025-11-28T06:33:15.123Z",
        "lhpipe.last.attempt": b"2025-11-28T06:33:16.004Z",
        "lhpipe.source.topic": b"orders",
        "lhpipe.source.partition": b"2",
        "lhpipe.source.offset": b"41",
    }


def test_a_webhook_record_names_its_webhook_id() -> None:
    record = Record(origin=WebhookOrigin("hook", "msg_123"), key=None, value=b"{}")
    headers = dict(envelope(record, FAILURE, "p"))
    assert headers["lhpipe.source.webhook.id"] == b"msg_123"
    assert "lhpipe.source.topic" not in headers


def test_timestamps_are_utc_with_milliseconds() -> None:
    assert epoch_ms_text(0) == "1970-01-01T00:00:00.000Z"
    assert epoch_ms_text(1_000_999) == "1970-01-01T00:16:40.999Z"


def test_a_dead_letter_write_retries_kafka_timeouts() -> None:
    producer = RecordingProducer(TransientError("timed out", code="KAFKA_MSG_TIMED_OUT"))
    sleeps = Sleeps()
    writer = DeadLetterWriter(pipeline="p", topic="p-dlq", produce=producer, sleep=sleeps)
    asyncio.run(writer.write(RECORD, FAILURE))
    assert len(producer.records) == 1
    assert len(sleeps.delays) == 1


def _policy(producer: RecordingProducer | None, permanent: str = "stop") -> FailurePolicy:
    writer = (
        None
        if producer is None
        else DeadLetterWriter(pipeline="p", topic="p-dlq", produce=producer, sleep=Sleeps())
    )
    return FailurePolicy(pipeline="p", dead_letters=writer, permanent=permanent)  # type: ignore[arg-type]


def test_with_a_dead_letter_topic_the_record_is_acknowledged_after_the_write() -> None:
    producer = RecordingProducer()
    outcome, _ = asyncio.run(_policy(producer).handle(RECORD, FAILURE))
    assert outcome == "acknowledge"
    assert len(producer.records) == 1


def test_a_dead_letter_that_cannot_be_written_stops_the_pipeline() -> None:
    producer = RecordingProducer(PermanentError("too large", code="KAFKA_MSG_SIZE_TOO_LARGE"))
    outcome, why = asyncio.run(_policy(producer).handle(RECORD, FAILURE))
    assert outcome == "stop"
    assert why.target == "dead_letter:p-dlq"


@pytest.mark.parametrize(("permanent", "expected"), [("stop", "stop"), ("skip", "acknowledge")])
def test_without_a_dead_letter_topic_the_policy_decides(permanent: str, expected: str) -> None:
    outcome, why = asyncio.run(_policy(None, permanent).handle(RECORD, FAILURE))
    assert outcome == expected
    assert why is FAILURE


def test_a_retry_after_hint_from_the_server_lengthens_the_delay() -> None:
    error = TransientError("busy", code="HTTP_429")
    error.retry_after = 7.0  # type: ignore[attr-defined]
    sender = ScriptedSender(error)
    delivery, _, sleeps = _delivery(sender)
    asyncio.run(delivery.deliver(PLAN))
    assert sleeps.delays == [7.0]
