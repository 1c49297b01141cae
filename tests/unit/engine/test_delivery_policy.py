"""The delivery policy in numbers: the exact backoff of each error class, what a failure records,
the metrics and log lines of a retrying target, and its status while records retry."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from typing import Any

import pytest
from test_delivery import Pauses, Sleeps

from lhpipe.core.errors import (
    ExpressionError,
    PausedError,
    PermanentError,
    TransientError,
)
from lhpipe.core.metrics import REGISTRY
from lhpipe.core.plans import LogPlan, Plan
from lhpipe.core.record import KafkaOrigin, Record
from lhpipe.core.senders import ALREADY_EXISTS
from lhpipe.runtime.delivery import (
    Delivery,
    RecordFailed,
    TargetStage,
    classify,
    failed,
    plan_and_deliver,
)

PLAN = LogPlan(value={"n": 1})


class FixedDraw(random.Random):
    """A jitter source that always draws ``value``: 0.0 is the bottom of the jitter range (half
    the ceiling), 1.0 its top (the whole ceiling)."""

    def __init__(self, value: float) -> None:
        super().__init__(0)
        self.value = value

    def random(self) -> float:
        return self.value


class Sender:
    """Raises the scripted errors in turn, then answers ``outcome``; keeps every plan sent."""

    def __init__(self, *errors: Exception, outcome: str | None = None) -> None:
        self.errors = list(errors)
        self.outcome = outcome
        self.sent: list[Plan] = []

    async def send(self, plan: Plan) -> str | None:
        self.sent.append(plan)
        if self.errors:
            raise self.errors.pop(0)
        return self.outcome

    async def close(self) -> None:
        return None

    def connected(self) -> bool:
        return True


def _delivery(
    sender: Sender, *, pipeline: str = "p", draw: float = 1.0, **kwargs: Any
) -> tuple[Delivery, Sleeps, Pauses]:
    sleeps, pauses = Sleeps(), Pauses()
    delivery = Delivery(
        pipeline=pipeline,
        target="run_wf:wf",
        sender=sender,
        pauses=pauses,
        sleep=sleeps,
        rng=FixedDraw(draw),
        **kwargs,
    )
    return delivery, sleeps, pauses


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


# -- backoff ----------------------------------------------------------------------------------

DOUBLING_FROM_100_MS = [0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 6.4, 12.8, 25.6, 30.0, 30.0, 30.0]


@pytest.mark.parametrize(("draw", "share"), [(1.0, 1.0), (0.0, 0.5)])
def test_transient_retries_wait_100_ms_doubling_to_30_s_jittered_down_by_up_to_half(
    draw: float, share: float
) -> None:
    sender = Sender(*(TransientError("down", code="UNAVAILABLE") for _ in range(12)))
    delivery, sleeps, _ = _delivery(sender, draw=draw)
    asyncio.run(delivery.deliver(PLAN))
    assert sleeps.delays == pytest.approx([d * share for d in DOUBLING_FROM_100_MS])
    assert sender.sent == [PLAN] * 13


def test_paused_retries_wait_5_s_doubling_to_30_s() -> None:
    sender = Sender(*(PausedError("no parent", code="FAILED_PRECONDITION") for _ in range(5)))
    delivery, sleeps, pauses = _delivery(sender)
    asyncio.run(delivery.deliver(PLAN))
    assert sleeps.delays == [5.0, 10.0, 20.0, 30.0, 30.0]
    # One pause for the record however many times it is retried, and one resume.
    assert pauses.events == [
        "pause: run_wf:wf: paused error FAILED_PRECONDITION: no parent",
        "resume",
    ]


@pytest.mark.parametrize(
    ("retry_after", "delay"),
    [(0.05, 0.1), (7, 7.0), (90.0, 30.0)],
    ids=["shorter-than-the-backoff", "longer", "beyond-the-cap"],
)
def test_a_retry_after_is_believed_only_when_longer_and_up_to_30_s(
    retry_after: float, delay: float
) -> None:
    error = TransientError("busy", code="HTTP_429")
    error.retry_after = retry_after  # type: ignore[attr-defined]
    delivery, sleeps, _ = _delivery(Sender(error))
    asyncio.run(delivery.deliver(PLAN))
    assert sleeps.delays == [delay]


# -- what a failure says ----------------------------------------------------------------------


def test_network_exceptions_are_transient_network_errors_and_others_unexpected_ones() -> None:
    reset = classify(ConnectionResetError("reset by peer"))
    assert isinstance(reset, TransientError)
    assert (reset.code, str(reset)) == ("NETWORK", "ConnectionResetError: reset by peer")
    timeout = classify(TimeoutError("no answer"))
    assert isinstance(timeout, TransientError)
    assert (timeout.code, str(timeout)) == ("NETWORK", "TimeoutError: no answer")
    bug = classify(KeyError("n"))
    assert isinstance(bug, PermanentError)
    assert (bug.code, str(bug)) == ("UNEXPECTED", "unexpected KeyError: 'n'")


def test_a_network_error_that_runs_out_of_retries_keeps_its_code() -> None:
    delivery, sleeps, _ = _delivery(Sender(OSError("unreachable")), retry=0)
    with pytest.raises(RecordFailed) as info:
        asyncio.run(delivery.deliver(PLAN))
    error = info.value.failure.error
    assert (error.error_class, error.code) == ("permanent", "NETWORK")
    assert str(error) == "OSError: unreachable (gave up after 0 retries)"
    assert sleeps.delays == []


def test_a_failure_records_its_target_its_attempts_and_when_they_were_made() -> None:
    sender = Sender(
        TransientError("down", code="UNAVAILABLE"),
        TransientError("down", code="UNAVAILABLE"),
        PermanentError("no such WfSpec", code="NOT_FOUND"),
    )
    delivery, _, _ = _delivery(sender)
    before = _now_ms()
    with pytest.raises(RecordFailed) as info:
        asyncio.run(delivery.deliver(PLAN))
    after = _now_ms()
    failure = info.value.failure
    assert (failure.target, failure.attempts, failure.error.code) == ("run_wf:wf", 3, "NOT_FOUND")
    assert before <= failure.first_attempt_ms <= failure.last_attempt_ms <= after
    assert str(info.value) == "run_wf:wf: permanent error NOT_FOUND: no such WfSpec"


def test_a_failure_before_any_target_is_one_attempt_at_its_stage() -> None:
    before = _now_ms()
    exc = failed(ExpressionError("field 'id' is missing"), "steps")
    after = _now_ms()
    failure = exc.failure
    assert (failure.target, failure.attempts) == ("steps", 1)
    assert before <= failure.first_attempt_ms == failure.last_attempt_ms <= after
    assert str(exc) == "steps: permanent error EXPRESSION: field 'id' is missing"


# -- plan every target, then deliver in order -------------------------------------------------


def test_every_target_is_planned_from_the_record_before_any_is_sent() -> None:
    record = Record(origin=KafkaOrigin("orders", 0, 7), key=b"k-1", value=b"{}")
    first, second = Sender(), Sender()

    def plan_key(env: Any, rec: Record) -> Plan:
        return LogPlan(value={"key": rec.key, "n": env["n"]})

    def plan_missing(env: Any, rec: Record) -> Plan:
        raise ExpressionError("field 'x' is missing")

    stages = [
        TargetStage("to_log", plan_key, _delivery(first, pipeline="p")[0]),
        TargetStage("run_wf:second", plan_key, _delivery(second, pipeline="p")[0]),
    ]
    asyncio.run(plan_and_deliver(stages, {"n": 2}, record))
    assert first.sent == second.sent == [LogPlan(value={"key": b"k-1", "n": 2})]

    failing = [stages[0], TargetStage("run_wf:second", plan_missing, stages[1].delivery)]
    with pytest.raises(RecordFailed) as info:
        asyncio.run(plan_and_deliver(failing, {"n": 3}, record))
    assert len(first.sent) == 1  # the first target got nothing for this record
    failure = info.value.failure
    assert (failure.target, failure.attempts, failure.error.code) == (
        "run_wf:second",
        1,
        "EXPRESSION",
    )


# -- metrics, logs and status -----------------------------------------------------------------


def test_retries_failures_acceptances_and_latency_are_counted_per_pipeline_and_target() -> None:
    labels = {"pipeline": "metrics-p", "target": "run_wf:wf"}
    names = [
        "lhpipe_records_out_total",
        "lhpipe_lh_already_exists_total",
        "lhpipe_retries_total",
        "lhpipe_target_latency_seconds_count",
        "lhpipe_target_latency_seconds_sum",
    ]
    start = {name: _sample(name, **labels) for name in names}
    failed_start = {
        cls: _sample("lhpipe_records_failed_total", **labels, error_class=cls)
        for cls in ("transient", "paused")
    }
    sender = Sender(
        TransientError("down", code="UNAVAILABLE"),
        PausedError("denied", code="PERMISSION_DENIED"),
        TransientError("down", code="UNAVAILABLE"),
    )
    delivery, _, _ = _delivery(sender, pipeline="metrics-p")
    began = time.monotonic()
    asyncio.run(delivery.deliver(PLAN))
    # Sent before: LittleHorse answers ALREADY_EXISTS, which is a success counted apart.
    delivery.sender = Sender(outcome=ALREADY_EXISTS)
    asyncio.run(delivery.deliver(PLAN))
    delivery.sender = Sender()
    asyncio.run(delivery.deliver(PLAN))
    took = time.monotonic() - began
    grown = {name: _sample(name, **labels) - start[name] for name in names}
    latency = grown.pop("lhpipe_target_latency_seconds_sum")
    assert grown == {
        "lhpipe_records_out_total": 3,
        "lhpipe_lh_already_exists_total": 1,
        "lhpipe_retries_total": 3,
        "lhpipe_target_latency_seconds_count": 3,
    }
    assert 0 <= latency <= took
    assert {
        cls: _sample("lhpipe_records_failed_total", **labels, error_class=cls) - failed_start[cls]
        for cls in failed_start
    } == {"transient": 2, "paused": 1}


def test_the_first_failure_of_a_record_is_logged_and_its_retries_only_at_debug(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sender = Sender(*(TransientError("down", code="UNAVAILABLE") for _ in range(3)))
    delivery, _, _ = _delivery(sender, pipeline="orders", draw=0.0)
    with caplog.at_level(logging.DEBUG, logger="lhpipe.runtime.delivery"):
        asyncio.run(delivery.deliver(PLAN))
    lines = [
        (r.levelno, r.getMessage()) for r in caplog.records if r.name == "lhpipe.runtime.delivery"
    ]
    said = "pipeline orders: run_wf:wf: transient error UNAVAILABLE: down; retrying in"
    assert lines == [
        (logging.INFO, f"{said} 0.05 s (attempt 1)"),
        (logging.DEBUG, f"{said} 0.10 s (attempt 2)"),
        (logging.DEBUG, f"{said} 0.20 s (attempt 3)"),
    ]


class Gate:
    """A sleep that returns only when the test lets it."""

    def __init__(self) -> None:
        self.waiting: list[asyncio.Future[None]] = []

    async def __call__(self, delay: float) -> None:
        future = asyncio.get_running_loop().create_future()
        self.waiting.append(future)
        await future


def test_the_target_stays_unhealthy_with_its_error_until_no_record_retries() -> None:
    class FirstAttemptFails(Sender):
        async def send(self, plan: Plan) -> str | None:
            self.sent.append(plan)
            if self.sent.count(plan) == 1:
                raise TransientError("down", code="UNAVAILABLE")
            return None

    gate = Gate()
    delivery = Delivery(
        pipeline="p", target="run_wf:wf", sender=FirstAttemptFails(), sleep=gate, rng=FixedDraw(0)
    )

    def status() -> tuple[int, bool, str | None]:
        return delivery.retrying, delivery.healthy(), delivery.last_error

    async def scenario() -> list[tuple[int, bool, str | None]]:
        seen = [status()]
        one = asyncio.create_task(delivery.deliver(LogPlan(value=1)))
        two = asyncio.create_task(delivery.deliver(LogPlan(value=2)))
        for _ in range(100):
            if len(gate.waiting) == 2:
                break
            await asyncio.sleep(0)
        seen.append(status())
        gate.waiting[0].set_result(None)
        await one
        seen.append(status())
        gate.waiting[1].set_result(None)
        await two
        seen.append(status())
        return seen

    down = "transient error UNAVAILABLE: down"
    assert asyncio.run(scenario()) == [
        (0, True, None),
        (2, False, down),
        (1, False, down),
        (0, True, None),
    ]
