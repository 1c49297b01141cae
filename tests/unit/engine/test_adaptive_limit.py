"""The adaptive concurrency limit (lhpipe/runtime/limit.py), the scheduler's moving limit, and a
runner finding a simulated server's capacity."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from lhpipe.core import metrics
from lhpipe.core.errors import TransientError
from lhpipe.core.plans import LogPlan, Plan
from lhpipe.core.record import KafkaOrigin, Record
from lhpipe.runtime.delivery import Delivery, FailurePolicy, TargetStage
from lhpipe.runtime.limit import (
    BACKOFF_RATIO,
    INITIAL_LIMIT,
    MIN_WINDOW_SAMPLES,
    AdaptiveLimit,
)
from lhpipe.runtime.ordering import FIXED_LIMIT, KeyOrderedScheduler
from lhpipe.runtime.runner import PipelineLogic, PipelineRunner


class Busy:
    """How many records are in flight, as the scheduler would say."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __call__(self) -> int:
        return self.n


def windows(limit: AdaptiveLimit, busy: Busy, latency: float, count: int) -> None:
    """``count`` full windows at ``latency``, every slot in use."""
    for _ in range(count):
        busy.n = limit.limit
        for _ in range(max(MIN_WINDOW_SAMPLES, limit.limit)):
            limit.sample(latency)


def test_the_limit_starts_at_the_initial_value_or_the_ceiling_when_lower() -> None:
    assert AdaptiveLimit(1000, Busy(0)).limit == INITIAL_LIMIT
    assert AdaptiveLimit(10, Busy(0)).limit == 10
    with pytest.raises(ValueError):
        AdaptiveLimit(0, Busy(0))


def test_while_latency_holds_the_limit_grows_up_to_the_ceiling_and_no_further() -> None:
    busy = Busy(0)
    seen: list[int] = []
    limit = AdaptiveLimit(300, busy, on_change=seen.append)
    windows(limit, busy, 0.010, 3)
    assert limit.limit > INITIAL_LIMIT  # it grew
    windows(limit, busy, 0.010, 400)
    assert limit.limit == 300  # at the ceiling, and held there
    assert seen == sorted(seen) and seen[-1] == 300
    assert len(seen) == len(set(seen))  # told only of changes
    assert all(isinstance(value, int) for value in seen)


def test_slow_start_doubles_the_limit_per_window_until_answers_slow_down() -> None:
    busy = Busy(0)
    limit = AdaptiveLimit(10_000, busy)
    windows(limit, busy, 0.010, 1)  # the first window only learns the usual latency
    assert limit.limit == INITIAL_LIMIT
    windows(limit, busy, 0.010, 3)
    assert limit.limit == INITIAL_LIMIT * 8 and limit.slow_start
    windows(limit, busy, 0.030, 1)  # three times slower than usual: slow start ends
    assert not limit.slow_start
    after = limit.limit
    assert after < INITIAL_LIMIT * 8
    windows(limit, busy, 0.010, 1)  # fast again: it grows, but by a square root, not twofold
    assert after < limit.limit < after * 1.2


def test_an_overload_ends_slow_start() -> None:
    busy = Busy(0)
    limit = AdaptiveLimit(10_000, busy)
    windows(limit, busy, 0.010, 2)
    limit.overload()
    assert not limit.slow_start
    before = limit.limit
    windows(limit, busy, 0.010, 1)
    assert before < limit.limit < before * 1.2


def test_when_answers_get_much_slower_than_usual_the_limit_shrinks() -> None:
    busy = Busy(0)
    limit = AdaptiveLimit(1000, busy)
    windows(limit, busy, 0.010, 20)
    before = limit.limit
    windows(limit, busy, 0.050, 3)  # five times slower than the long average: the server queues
    assert limit.limit < before
    # and a limit shrunk by slowness grows again once answers are as fast as before
    low = limit.limit
    windows(limit, busy, 0.010, 30)
    assert limit.limit > low


def test_an_overload_answer_backs_off_at_once_down_to_the_floor() -> None:
    busy = Busy(0)
    limit = AdaptiveLimit(1000, busy, floor=2)
    limit.overload()
    assert limit.limit == int(INITIAL_LIMIT * BACKOFF_RATIO)
    for _ in range(200):
        limit.overload()
    assert limit.limit == 2
    assert limit.overloads == 201


def test_a_pipeline_with_too_little_to_send_teaches_nothing() -> None:
    busy = Busy(3)  # three records in flight of 64 allowed: the target is not the bottleneck
    limit = AdaptiveLimit(1000, busy)
    for _ in range(50 * INITIAL_LIMIT):
        limit.sample(0.010)
    assert limit.windows >= 49
    assert limit.limit == INITIAL_LIMIT


def test_the_scheduler_follows_a_lowered_and_a_raised_limit() -> None:
    async def scenario() -> tuple[int, int, int]:
        running = 0
        peak = 0
        gate = asyncio.Event()

        async def work(item: int) -> None:
            nonlocal running, peak
            running += 1
            peak = max(peak, running)
            await gate.wait()
            running -= 1

        scheduler: KeyOrderedScheduler[int] = KeyOrderedScheduler(work, 8)
        for item in range(40):
            scheduler.submit(item, None)
        await asyncio.sleep(0.01)
        first = peak
        scheduler.set_limit(20)  # starts workers for the ready items at once
        await asyncio.sleep(0.01)
        raised = peak
        scheduler.set_limit(2)
        peak = 0  # running stays: the 20 still count until they finish
        gate.set()
        await asyncio.sleep(0)
        gate.clear()
        # the 20 running finish; of the rest, at most 2 run at once from now on
        await asyncio.sleep(0.01)
        lowered = peak
        gate.set()
        await scheduler.wait_idle()
        return first, raised, lowered

    first, raised, lowered = asyncio.run(scenario())
    assert (first, raised) == (8, 20)
    assert lowered <= 2


# -- a runner against a simulated server --------------------------------------------------------


class SimulatedServer:
    """An adaptive sender with ``capacity`` parallel slots: each call takes ``service`` seconds
    and waits its turn for a slot when all are busy, so latency rises with the queue. With
    ``exhausted`` set, it answers RESOURCE_EXHAUSTED whenever more than ``capacity`` calls are
    in flight."""

    adaptive = True

    def __init__(self, capacity: int, service: float) -> None:
        self.slots = asyncio.Semaphore(capacity)
        self.capacity = capacity
        self.service = service
        self.in_flight = 0
        self.peak = 0
        self.exhausted = False
        self.refused = 0

    async def send(self, plan: Plan) -> None:
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            if self.exhausted and self.in_flight > self.capacity:
                self.refused += 1
                raise TransientError("RESOURCE_EXHAUSTED: too busy", code="RESOURCE_EXHAUSTED")
            async with self.slots:
                await asyncio.sleep(self.service)
        finally:
            self.in_flight -= 1

    def connected(self) -> bool:
        return True

    async def close(self) -> None:
        pass


class Source:
    def __init__(self) -> None:
        self.paused = False
        self.error: str | None = None
        self.lag: dict[Any, int] = {}

    def start(self) -> None:
        pass

    def commit(self, offsets: dict[Any, int]) -> None:
        pass

    async def stop(self, final: Any) -> None:
        pass

    def connected(self) -> bool:
        return True


class Decoder:
    is_avro = False

    def decode_key(self, raw: bytes | None) -> Any:
        return raw

    def decode_value(self, raw: bytes | None, writer_schema: Any = None) -> Any:
        return json.loads(raw or b"null")


def runner_for(sender: Any, ceiling: int, name: str) -> PipelineRunner:
    delivery = Delivery(pipeline=name, target="run_wf:w", sender=sender, backoff=0.001)
    logic = PipelineLogic(
        decoder=Decoder(),
        initial_env=lambda record, key, value: {"value": value},
        steps=lambda env: env,
        targets=[TargetStage("run_wf:w", lambda env, record: LogPlan(env["value"]), delivery)],
    )
    policy = FailurePolicy(pipeline=name, dead_letters=None, permanent="skip")
    return PipelineRunner(name, logic, policy, lambda runner: Source(), max_in_flight=ceiling)


async def pump(runner: PipelineRunner, count: int, start: int = 0) -> None:
    offset = start
    while offset < start + count:
        room = min(runner.room(), start + count - offset)
        if room > 0:
            runner.on_records(
                [Record(KafkaOrigin("in", 0, o), None, b"{}") for o in range(offset, offset + room)]
            )
            offset += room
        await asyncio.sleep(0.001)
    while runner.acknowledged < offset:
        await asyncio.sleep(0.001)


def test_a_runner_grows_its_limit_while_the_server_keeps_up_and_backs_off_when_refused() -> None:
    async def scenario() -> tuple[int, int, int, int, int, dict[str, Any]]:
        server = SimulatedServer(capacity=100, service=0.002)
        runner = runner_for(server, ceiling=400, name="adaptive_sim")
        assert runner.limit is not None
        await runner.start()
        runner.on_assigned([("in", 0)])
        await pump(runner, 6000)
        grown, peak = runner.limit.limit, server.peak
        server.exhausted = True
        await pump(runner, 3000, start=6000)
        backed_off = runner.limit.limit
        stats = runner.status().stats
        await runner.stop()
        return grown, peak, backed_off, server.refused, runner.limit.overloads, stats

    grown, peak, backed_off, refused, overloads, stats = asyncio.run(scenario())
    assert grown > INITIAL_LIMIT  # the server kept up: more in flight
    assert peak <= 400  # never above the ceiling
    assert refused > 0 and overloads == refused
    assert grown > 100  # beyond the capacity: answers were only queueing at the server
    assert backed_off < grown and backed_off <= 100 + 15  # near the server's real capacity
    assert stats["limit"] == backed_off
    gauge = metrics.REGISTRY.get_sample_value(
        "lhpipe_concurrency_limit", {"pipeline": "adaptive_sim"}
    )
    assert gauge == backed_off


def test_a_pipeline_without_an_adaptive_target_keeps_the_fixed_limit() -> None:
    class Plain(SimulatedServer):
        adaptive = False

    runner = runner_for(Plain(10, 0.001), ceiling=512, name="fixed_sim")
    assert runner.limit is None
    assert runner.status().stats["limit"] == FIXED_LIMIT
    assert runner_for(Plain(10, 0.001), ceiling=5, name="fixed_low").status().stats["limit"] == 5


# -- the source's thread waiting for room ----------------------------------------------------------


def test_the_source_thread_sleeps_until_records_finish_and_not_longer() -> None:
    """``wait_for_room`` returns as soon as enough records are done (woken by the loop), and
    after its timeout when none are."""
    import threading
    import time

    async def scenario() -> tuple[float, float, int]:
        gate = asyncio.Event()

        class Held(SimulatedServer):
            async def send(self, plan: Plan) -> None:
                await gate.wait()

        runner = runner_for(Held(10, 0.0), ceiling=8, name="room_wait")
        runner.max_buffered = 40
        await runner.start()
        runner.on_assigned([("in", 0)])
        runner.on_records([Record(KafkaOrigin("in", 0, o), None, b"{}") for o in range(40)])
        assert runner.room() == 0
        loop = asyncio.get_running_loop()
        # nothing finishes: the wait ends at its timeout
        started = time.monotonic()
        await loop.run_in_executor(None, runner.wait_for_room, 10, 0.2)
        timed_out = time.monotonic() - started
        # records finish while the thread waits: it wakes long before its timeout
        woke: list[float] = []

        def wait() -> None:
            begun = time.monotonic()
            runner.wait_for_room(10, 30.0)
            woke.append(time.monotonic() - begun)

        thread = threading.Thread(target=wait)
        thread.start()
        await asyncio.sleep(0.05)
        gate.set()
        while thread.is_alive():
            await asyncio.sleep(0.01)
        room = runner.room()
        await runner.stop()
        return timed_out, woke[0], room

    timed_out, woke, room = asyncio.run(scenario())
    assert timed_out >= 0.2
    assert woke < 5.0  # woken by the finished records, not by its 30 s timeout
    assert room >= 10
