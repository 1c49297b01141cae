"""The pipeline runner with in-process fakes: a scripted source, recording senders."""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pytest

from lhpipe.core.errors import DecodeError, PausedError, PermanentError, TransientError
from lhpipe.core.plans import LogPlan, Plan
from lhpipe.core.record import KafkaOrigin, Record
from lhpipe.runtime import runner as runner_module
from lhpipe.runtime.delivery import DeadLetterWriter, Delivery, FailurePolicy, TargetStage
from lhpipe.runtime.runner import PipelineLogic, PipelineRunner
from lhpipe.runtime.status import State

TP = tuple[str, int]


class FakeSource:
    """Stands in for the Kafka consumer: records commits and the final offsets."""

    def __init__(self) -> None:
        self.paused = False
        self.error: str | None = None
        self.commits: list[dict[TP, int]] = []
        self.lag: dict[TP, int] = {}
        self.final: dict[TP, int] | None = None
        self.started = False

    def start(self) -> None:
        self.started = True

    def commit(self, offsets: dict[TP, int]) -> None:
        if offsets:
            self.commits.append(dict(offsets))

    async def stop(self, final_offsets: Callable[[], dict[TP, int]]) -> None:
        self.final = final_offsets()

    def connected(self) -> bool:
        return True


class RecordingSender:
    """Accepts every plan after ``gate`` opens (if given); fails plans whose value says so."""

    def __init__(self) -> None:
        self.sent: list[Any] = []
        self.gates: dict[Any, asyncio.Event] = {}
        self.failures: dict[Any, list[Exception]] = {}

    async def send(self, plan: Plan) -> None:
        assert isinstance(plan, LogPlan)
        name = plan.value["n"]
        if name in self.gates:
            await self.gates[name].wait()
        errors = self.failures.get(name)
        if errors:
            raise errors.pop(0)
        self.sent.append(name)

    async def close(self) -> None:
        return None

    def connected(self) -> bool:
        return True


class JsonDecoder:
    is_avro = False

    def decode_key(self, raw: bytes | None) -> Any:
        return None if raw is None else raw.decode()

    def decode_value(self, raw: bytes | None, writer_schema: Any = None) -> Any:
        if raw is None:
            return None
        try:
            return json.loads(raw)
        except ValueError as exc:
            raise DecodeError(f"value is not JSON: {exc}") from exc


def _env(record: Record, key: Any, value: Any) -> dict[str, Any]:
    return {"key": key, "value": value}


def _steps(env: dict[str, Any]) -> dict[str, Any] | None:
    return None if env["value"].get("drop") else env


def _planner(env: Mapping[str, Any], record: Record) -> Plan:
    value = env["value"]
    if "n" not in value:
        raise PermanentError("field n is missing", code="EXPRESSION")
    return LogPlan(value={"n": value["n"]})


class DeadLetters:
    def __init__(self) -> None:
        self.records: list[tuple[str, bytes | None, bytes | None, list[Any]]] = []

    async def __call__(
        self,
        topic: str,
        value: bytes | None,
        key: bytes | None,
        headers: Sequence[tuple[str, bytes | None]],
    ) -> None:
        self.records.append((topic, value, key, list(headers)))


async def _no_sleep(delay: float) -> None:
    await asyncio.sleep(0)


class Harness:
    def __init__(
        self,
        *,
        dead_letter: bool = False,
        permanent: str = "stop",
        max_in_flight: int = 8,
        max_buffered: int | None = None,
        retry: int | None = None,
    ) -> None:
        self.sender = RecordingSender()
        self.source = FakeSource()
        self.dead_letters = DeadLetters()
        writer = (
            DeadLetterWriter(pipeline="p", topic="p-dlq", produce=self.dead_letters)
            if dead_letter
            else None
        )
        policy = FailurePolicy(pipeline="p", dead_letters=writer, permanent=permanent)  # type: ignore[arg-type]
        self.runner: PipelineRunner
        delivery = Delivery(
            pipeline="p",
            target="to_log",
            sender=self.sender,
            retry=retry,
            sleep=_no_sleep,
            rng=random.Random(0),
        )
        logic = PipelineLogic(
            decoder=JsonDecoder(),
            initial_env=_env,
            steps=_steps,
            targets=[TargetStage("to_log", _planner, delivery)],
        )
        self.runner = PipelineRunner(
            "p",
            logic,
            policy,
            lambda runner: self.source,
            max_in_flight=max_in_flight,
            max_buffered=max_buffered,
        )

    async def feed(self, *values: tuple[int, str | None, bytes], partition: int = 0) -> None:
        self.runner.on_records(
            [
                Record(
                    KafkaOrigin("in", partition, offset),
                    None if key is None else key.encode(),
                    value,
                )
                for offset, key, value in values
            ]
        )
        await asyncio.sleep(0)

    async def settle(self) -> None:
        for _ in range(50):
            await asyncio.sleep(0)

    async def until(self, condition: Callable[[], Any]) -> None:
        """Let the runner's tasks run until ``condition`` holds (failing after 30 s)."""
        deadline = asyncio.get_running_loop().time() + 30
        while not condition():
            assert asyncio.get_running_loop().time() < deadline, "timed out"
            await asyncio.sleep(0.001)


def _json(n: int, **extra: Any) -> bytes:
    return json.dumps({"n": n, **extra}).encode()


def test_records_reach_the_target_and_the_final_commit_is_one_past_the_last() -> None:
    async def scenario() -> Harness:
        h = Harness()
        await h.runner.start()
        h.runner.on_assigned([("in", 0)])
        await h.feed(*[(o, f"k{o}", _json(o)) for o in range(10)])
        await h.runner.stop()
        return h

    h = asyncio.run(scenario())
    assert sorted(h.sender.sent) == list(range(10))
    assert h.source.final == {("in", 0): 10}
    assert h.runner.status().state is State.STOPPED


def test_the_first_records_done_are_committed_without_waiting_for_the_commit_interval(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """After a start the committer looks often until its first commit; with the interval set
    far beyond the test's patience, only that first look can commit."""
    monkeypatch.setattr(runner_module, "COMMIT_INTERVAL_SECONDS", 3600.0)

    async def scenario() -> list[dict[TP, int]]:
        h = Harness()
        await h.runner.start()
        h.runner.on_assigned([("in", 0)])
        await h.feed(*[(o, f"k{o}", _json(o)) for o in range(3)])
        await h.until(lambda: h.source.commits)
        commits = list(h.source.commits)
        await h.runner.stop()
        return commits

    assert asyncio.run(scenario())[0] == {("in", 0): 3}


def test_an_unfinished_record_holds_back_the_commit_of_later_ones() -> None:
    async def scenario() -> tuple[dict[TP, int], dict[TP, int] | None]:
        h = Harness()
        h.sender.gates[0] = asyncio.Event()
        await h.runner.start()
        await h.feed(*[(o, f"k{o}", _json(o)) for o in range(5)])
        await h.until(lambda: h.runner.acknowledged == 4)  # all but the first are done
        held = h.runner._tracker.committable()
        h.sender.gates[0].set()
        await h.runner.stop()
        return held, h.source.final

    held, final = asyncio.run(scenario())
    assert held == {}
    assert final == {("in", 0): 5}


def test_records_with_the_same_key_arrive_in_order() -> None:
    async def scenario() -> list[int]:
        h = Harness(max_in_flight=16)
        h.sender.gates[0] = asyncio.Event()  # the first record of key "a" is slow
        await h.runner.start()
        await h.feed((0, "a", _json(0)), (1, "b", _json(1)), (2, "a", _json(2)), (3, "a", _json(3)))
        await h.until(lambda: h.sender.sent == [1])  # another key went ahead; "a" waits
        h.sender.gates[0].set()
        await h.runner.stop()
        return h.sender.sent

    sent = asyncio.run(scenario())
    assert sent[0] == 1  # another key went ahead
    assert [n for n in sent if n in (0, 2, 3)] == [0, 2, 3]


def test_poison_records_are_dead_lettered_and_the_pipeline_goes_on() -> None:
    async def scenario() -> Harness:
        h = Harness(dead_letter=True)
        await h.runner.start()
        await h.feed(
            (0, "a", _json(0)),
            (1, "b", b"\xffnot json"),
            (2, "c", b'{"no_n": 1}'),
            (3, "d", _json(3)),
        )
        await h.runner.stop()
        return h

    h = asyncio.run(scenario())
    assert sorted(h.sender.sent) == [0, 3]
    assert h.source.final == {("in", 0): 4}
    letters = {value: dict(headers) for _, value, _, headers in h.dead_letters.records}
    assert set(letters) == {b"\xffnot json", b'{"no_n": 1}'}
    assert letters[b"\xffnot json"]["lhpipe.target"] == b"decode"
    assert letters[b"\xffnot json"]["lhpipe.error.code"] == b"DECODE"
    assert letters[b'{"no_n": 1}']["lhpipe.target"] == b"to_log"
    assert letters[b'{"no_n": 1}']["lhpipe.source.offset"] == b"2"


def test_permanent_stop_stops_the_pipeline_with_the_offset_at_the_failed_record() -> None:
    async def scenario() -> Harness:
        h = Harness(max_in_flight=1)
        await h.runner.start()
        await h.feed((0, "a", _json(0)), (1, "b", b"{}"), (2, "c", _json(2)))
        await h.settle()
        await h.runner.stop()
        return h

    h = asyncio.run(scenario())
    assert h.sender.sent == [0]
    assert h.source.final == {("in", 0): 1}
    status = h.runner.status()
    assert status.state is State.STOPPED
    assert status.detail is not None and "field n is missing" in status.detail
    assert not status.ready


def test_permanent_skip_acknowledges_the_failed_record() -> None:
    async def scenario() -> Harness:
        h = Harness(permanent="skip")
        await h.runner.start()
        await h.feed((0, "a", _json(0)), (1, "b", b"{}"), (2, "c", _json(2)))
        await h.runner.stop()
        return h

    h = asyncio.run(scenario())
    assert sorted(h.sender.sent) == [0, 2]
    assert h.source.final == {("in", 0): 3}
    assert h.dead_letters.records == []


def test_records_dropped_by_where_are_acknowledged_without_a_send() -> None:
    async def scenario() -> Harness:
        h = Harness()
        await h.runner.start()
        await h.feed((0, "a", _json(0, drop=True)), (1, "b", _json(1)))
        await h.runner.stop()
        return h

    h = asyncio.run(scenario())
    assert h.sender.sent == [1]
    assert h.source.final == {("in", 0): 2}


def test_a_paused_error_pauses_the_source_and_reports_until_it_clears() -> None:
    async def scenario() -> tuple[Any, bool, Any, bool]:
        h = Harness()
        h.sender.failures[0] = [PausedError("permission denied", code="PERMISSION_DENIED")]
        gate = asyncio.Event()

        async def slow_sleep(delay: float) -> None:
            await gate.wait()

        h.runner._logic.targets[0].delivery._sleep = slow_sleep
        await h.runner.start()
        await h.feed((0, "a", _json(0)))
        await h.settle()
        during, paused_during = h.runner.status(), h.source.paused
        gate.set()
        await h.settle()
        after, paused_after = h.runner.status(), h.source.paused
        await h.runner.stop()
        return during, paused_during, after, paused_after

    during, paused_during, after, paused_after = asyncio.run(scenario())
    assert during.state is State.PAUSED
    assert not during.ready
    assert "PERMISSION_DENIED" in during.detail
    assert paused_during
    assert after.state is State.RUNNING
    assert after.ready
    assert not paused_after


def test_a_target_retrying_makes_the_pipeline_not_ready_with_the_error() -> None:
    async def scenario() -> tuple[bool, str | None, bool]:
        h = Harness()
        h.sender.failures[0] = [TransientError("connection refused", code="UNAVAILABLE")]
        gate = asyncio.Event()

        async def slow_sleep(delay: float) -> None:
            await gate.wait()

        h.runner._logic.targets[0].delivery._sleep = slow_sleep
        await h.runner.start()
        await h.feed((0, "a", _json(0)))
        await h.settle()
        during = h.runner.status()
        gate.set()
        await h.runner.stop()
        return during.ready, during.detail, 0 in h.sender.sent

    ready, detail, delivered = asyncio.run(scenario())
    assert not ready
    assert detail is not None and "UNAVAILABLE" in detail and "to_log" in detail
    assert delivered


def test_revoking_a_partition_drops_its_waiting_records_and_returns_what_is_done() -> None:
    async def scenario() -> tuple[dict[TP, int], list[int], int]:
        h = Harness(max_in_flight=1)
        h.sender.gates[0] = asyncio.Event()
        await h.runner.start()
        h.runner.on_assigned([("in", 0), ("in", 1)])
        await h.feed((0, "a", _json(0)), (1, "b", _json(1)), partition=0)
        await h.feed((0, "x", _json(100)), partition=1)
        await h.settle()
        revoke = asyncio.create_task(h.runner.on_revoked([("in", 0)]))
        await h.settle()
        h.sender.gates[0].set()
        offsets = await revoke
        await h.runner.stop()
        return offsets, h.sender.sent, h.runner.room()

    offsets, sent, room = asyncio.run(scenario())
    assert offsets == {("in", 0): 1}  # record 0 finished; record 1 was dropped for the new owner
    assert sorted(sent) == [0, 100]
    assert room == 1000


def test_the_buffer_bounds_what_the_source_may_hand_over() -> None:
    async def scenario() -> tuple[int, int]:
        h = Harness(max_in_flight=2, max_buffered=10)
        for n in range(4):
            h.sender.gates[n] = asyncio.Event()
        await h.runner.start()
        await h.feed(*[(o, f"k{o}", _json(o)) for o in range(4)])
        before = h.runner.room()
        for gate in h.sender.gates.values():
            gate.set()
        await h.runner.stop()
        return before, h.runner.room()

    before, after = asyncio.run(scenario())
    assert (before, after) == (6, 10)


@pytest.mark.parametrize("retry", [0, 2])
def test_retry_exhaustion_dead_letters_the_record(retry: int) -> None:
    async def scenario() -> Harness:
        h = Harness(dead_letter=True, retry=retry)
        h.sender.failures[0] = [TransientError("down", code="UNAVAILABLE")] * (retry + 1)
        await h.runner.start()
        await h.feed((0, "a", _json(0)), (1, "b", _json(1)))
        await h.runner.stop()
        return h

    h = asyncio.run(scenario())
    assert h.sender.sent == [1]
    [(_, _, _, headers)] = h.dead_letters.records
    assert dict(headers)["lhpipe.attempts"] == str(retry + 1).encode()
    assert h.source.final == {("in", 0): 2}
