"""Benchmark: Kafka → ``run_wf`` with lhpipe, against a bare ``grpc.aio`` loop (performance.md).

Against the running local stack (``lhpipe stack up``):

1. registers a WfSpec with one STR variable and no tasks (its WfRuns complete at once);
2. produces N JSON records (``{"name": "customer-<i>"}``, no key) to a fresh topic;
3. (a) the limit: a bare ``grpc.aio`` loop sends the same RunWf requests (the same WfSpec, the
   same variable, ids of the same shape, ``bare-…`` instead of the pipeline's name) with the
   same concurrency as lhpipe's default in-flight limit, to the same server, and is timed;
4. (b) lhpipe: ``lhpipe run`` (a subprocess) on a one-pipeline file ``from topic … run_wf …``,
   timed from the process start until the group's committed offsets reach the end of the topic
   (at-least-once: an offset is committed only after LittleHorse accepted the record). Nothing
   is subtracted; the time to the first committed record and the rate after it are printed
   apart.

Both rates, their ratio and the goal (≥ 0.8) are printed. ``--rounds N`` runs N rounds, each
on a fresh topic with (a) and (b) back to back (alternating which goes first), and reports the
median of the per-round ratios: the two sides of a round see the same load on the machine.
Every phase is bounded in time; the lhpipe process is always stopped.

With ``--sweep`` the bare loop runs at 64, 128, 256 and 512 in flight and its best is the limit
(the right concurrency depends on the server that minute); lhpipe runs with its defaults
against it. Each round prints both CPU figures and their ratio (lhpipe's includes its start).

Run: ``.venv/bin/python bench/kafka_to_lh.py [--records N] [--concurrency N] [--rounds N]
[--sweep]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import grpc
from _stack import KAFKA, LH_HOST, LH_PORT, LHPIPE, free_port, register_wf_specs, stop
from confluent_kafka import ConsumerGroupTopicPartitions, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]
from littlehorse.model import LittleHorseStub, RunWfRequest, VariableValue
from littlehorse.workflow import Workflow, WorkflowThread

GOAL_RATIO = 0.8
TENANT = "default"
DEFAULT_CONCURRENCY = 64  # lhpipe's default in-flight records per pipeline (delivery.md)
#: The bare loop's concurrencies with ``--sweep``: its best is the limit lhpipe is held to.
SWEEP = (64, 128, 256, 512)
PHASE_TIMEOUT_SECONDS = 600.0
RPC_DEADLINE_SECONDS = 10.0


@dataclass
class LhpipeTiming:
    total_seconds: float
    first_commit_seconds: float
    first_committed: int
    cpu_seconds: float

    def rate(self, records: int) -> float:
        return records / self.total_seconds

    def steady_rate(self, records: int) -> float:
        return (records - self.first_committed) / (self.total_seconds - self.first_commit_seconds)


def register_wf_spec(name: str) -> None:
    """A WfSpec with one STR variable ``name`` and no tasks; wait until the server shows it."""

    def entrypoint(wf: WorkflowThread) -> None:
        wf.declare_str("name")

    register_wf_specs([Workflow(name, entrypoint)])


def produce_records(topic: str, count: int, partitions: int) -> None:
    admin = AdminClient({"bootstrap.servers": KAFKA})
    new = NewTopic(topic, num_partitions=partitions, replication_factor=1)
    admin.create_topics([new])[topic].result(timeout=30)
    producer = Producer({"bootstrap.servers": KAFKA, "linger.ms": 20, "enable.idempotence": True})
    for i in range(count):
        producer.produce(topic, value=json.dumps({"name": f"customer-{i}"}).encode())
        if i % 10_000 == 0:
            producer.poll(0)
    if producer.flush(60) != 0:
        raise SystemExit("could not produce the records")


def delete_topic(topic: str) -> None:
    admin = AdminClient({"bootstrap.servers": KAFKA, "log_level": 3})
    try:
        admin.delete_topics([topic])[topic].result(timeout=30)
    except Exception as exc:  # cleanup only: report and go on
        print(f"  (could not delete topic {topic}: {exc})")


async def bare_loop(
    wf_spec: str, topic: str, count: int, partitions: int, concurrency: int, name: str = "bare"
) -> tuple[float, float]:
    """The limit: RunWf for every record, ``concurrency`` in flight, ALREADY_EXISTS is ok.
    Returns the elapsed and the CPU seconds of this process."""
    # The same ids lhpipe derives (<name>-<topic>-<partition>-<offset>), under another name
    # (one per run of a sweep: a WfRun id sent twice would be a cheap ALREADY_EXISTS).
    per_partition = -(-count // partitions)
    ids = [
        f"{name}-{topic}-{p}-{o}".lower() for p in range(partitions) for o in range(per_partition)
    ][:count]
    names = [f"customer-{i}" for i in range(count)]
    channel = grpc.aio.insecure_channel(f"{LH_HOST}:{LH_PORT}")
    stub = LittleHorseStub(channel)
    metadata = (("tenantid", TENANT),)
    next_index = 0
    failures: list[str] = []

    async def worker() -> None:
        nonlocal next_index
        while next_index < count:
            i = next_index
            next_index += 1
            request = RunWfRequest(
                wf_spec_name=wf_spec,
                id=ids[i],
                variables={"name": VariableValue(str=names[i])},
            )
            try:
                await stub.RunWf(request, timeout=RPC_DEADLINE_SECONDS, metadata=metadata)
            except grpc.aio.AioRpcError as exc:
                if exc.code() != grpc.StatusCode.ALREADY_EXISTS:
                    failures.append(f"{exc.code().name}: {exc.details()}")

    await channel.channel_ready()
    started = time.perf_counter()
    cpu_started = time.process_time()
    async with asyncio.timeout(PHASE_TIMEOUT_SECONDS):
        await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    cpu = time.process_time() - cpu_started
    await channel.close()
    if failures:
        raise SystemExit(f"the bare loop had {len(failures)} failures, first: {failures[0]}")
    return elapsed, cpu


def committed_total(admin: AdminClient, group: str, topic: str, partitions: int) -> int:
    request = ConsumerGroupTopicPartitions(
        group, [TopicPartition(topic, p) for p in range(partitions)]
    )
    result = admin.list_consumer_group_offsets([request])[group].result(timeout=10)
    return sum(max(0, tp.offset) for tp in result.topic_partitions)


def run_lhpipe(
    wf_spec: str, topic: str, count: int, partitions: int, workdir: Path
) -> LhpipeTiming:
    pipeline = f"bench_{uuid.uuid4().hex[:8]}"
    group = f"lhpipe-{pipeline}"
    source = workdir / f"{pipeline}.lhp"
    source.write_text(
        f'pipeline {pipeline} {{\n  from topic "{topic}" {{ value = json }}\n'
        f'  run_wf "{wf_spec}"\n}}\n',
        encoding="utf-8",
    )
    admin = AdminClient({"bootstrap.servers": KAFKA})
    log_path = workdir / f"{pipeline}.log"
    with log_path.open("wb") as log_file:
        started = time.perf_counter()
        process = subprocess.Popen(
            [str(LHPIPE), "run", str(source), "--port", str(free_port())],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            cwd=workdir,
        )
        try:
            first_at: float | None = None
            first_committed = 0
            while True:
                done = committed_total(admin, group, topic, partitions)
                now = time.perf_counter()
                if done and first_at is None:
                    first_at, first_committed = now - started, done
                if done >= count:
                    total = now - started
                    cpu = cpu_seconds(process.pid)
                    break
                if process.poll() is not None:
                    raise SystemExit(
                        f"lhpipe run exited with {process.returncode}; its output:\n"
                        + log_path.read_text(encoding="utf-8", errors="replace")[-3000:]
                    )
                if now - started > PHASE_TIMEOUT_SECONDS:
                    raise SystemExit(f"lhpipe committed {done} of {count} records in time")
                time.sleep(0.05)
        finally:
            stop(process)
    assert first_at is not None
    return LhpipeTiming(total, first_at, first_committed, cpu)


def cpu_seconds(pid: int) -> float:
    """User and system CPU time of a process so far, from ``/proc/PID/stat``."""
    fields = Path(f"/proc/{pid}/stat").read_text(encoding="ascii").rsplit(")", 1)[1].split()
    # utime and stime are the 14th and 15th fields; the split starts at the 3rd.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class BareTiming:
    concurrency: int
    seconds: float
    cpu_seconds: float


def measure_limit(args: argparse.Namespace, wf_spec: str, topic: str) -> BareTiming:
    """Run and print (a): at ``--concurrency`` in flight, or with ``--sweep`` at each of
    :data:`SWEEP` in flight; return the fastest."""
    count: int = args.records
    runs = []
    for concurrency in SWEEP if args.sweep else (args.concurrency,):
        seconds, cpu = asyncio.run(
            bare_loop(
                wf_spec, topic, count, args.partitions, concurrency, name=f"bare{concurrency}"
            )
        )
        print(
            f"  (a) bare grpc.aio, {concurrency:3d} in flight: {seconds:6.2f} s "
            f"{count / seconds:8.0f} records/s, {1000 * cpu / count:.2f} CPU ms/record"
        )
        runs.append(BareTiming(concurrency, seconds, cpu))
    best = min(runs, key=lambda run: run.seconds)
    if args.sweep:
        print(f"      the limit: the bare loop at {best.concurrency} in flight")
    return best


def measure_lhpipe(
    args: argparse.Namespace, wf_spec: str, topic: str, workdir: Path
) -> LhpipeTiming:
    """Run and print (b)."""
    count: int = args.records
    timing = run_lhpipe(wf_spec, topic, count, args.partitions, workdir)
    print(
        f"  (b) lhpipe run, start to last commit: {timing.total_seconds:6.2f} s "
        f"{timing.rate(count):8.0f} records/s, "
        f"{1000 * timing.cpu_seconds / count:.2f} CPU ms/record (start-up included)"
    )
    print(
        f"      first commit after {timing.first_commit_seconds:.2f} s "
        f"({timing.first_committed} records); after it "
        f"{timing.steady_rate(count):.0f} records/s"
    )
    return timing


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=DEFAULT_CONCURRENCY)
    parser.add_argument("--partitions", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument(
        "--sweep",
        action="store_true",
        help=f"run the bare loop at {', '.join(map(str, SWEEP))} in flight and take its best",
    )
    args = parser.parse_args()
    count: int = args.records
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]

    wf_spec = f"bench-noop-{uuid.uuid4().hex[:8]}"
    register_wf_spec(wf_spec)
    print(f"WfSpec {wf_spec}: one STR variable, no tasks")
    bare_rates: list[float] = []
    lhpipe_rates: list[float] = []
    ratios: list[float] = []
    steady_ratios: list[float] = []
    cpu_ratios: list[float] = []
    with tempfile.TemporaryDirectory(prefix="lhpipe-bench-") as tmp:
        for round_number in range(1, args.rounds + 1):
            topic = f"bench-{uuid.uuid4().hex[:8]}"
            produce_records(topic, count, args.partitions)
            print(f"round {round_number}: {count} records in topic {topic}")
            try:
                # Alternate which side goes first: the server may slow down as it fills up.
                if round_number % 2:
                    bare = measure_limit(args, wf_spec, topic)
                    timing = measure_lhpipe(args, wf_spec, topic, Path(tmp))
                else:
                    timing = measure_lhpipe(args, wf_spec, topic, Path(tmp))
                    bare = measure_limit(args, wf_spec, topic)
            finally:
                delete_topic(topic)
            bare_rate = count / bare.seconds
            bare_rates.append(bare_rate)
            lhpipe_rates.append(timing.rate(count))
            ratios.append(timing.rate(count) / bare_rate)
            steady_ratios.append(timing.steady_rate(count) / bare_rate)
            cpu_ratios.append(timing.cpu_seconds / bare.cpu_seconds)
            print(
                f"      ratio {ratios[-1]:.2f} (after the first commit: {steady_ratios[-1]:.2f}); "
                f"CPU per record lhpipe / bare {cpu_ratios[-1]:.2f}"
            )
    ratio = statistics.median(ratios)
    print()
    print(f"median of {args.rounds} round(s)")
    print(f"bare grpc.aio loop     {statistics.median(bare_rates):8.0f} records/s")
    print(f"lhpipe run             {statistics.median(lhpipe_rates):8.0f} records/s")
    print(
        f"ratio                  {ratio:8.2f}   "
        f"(after the first commit: {statistics.median(steady_ratios):.2f})"
    )
    print(f"CPU per record         {statistics.median(cpu_ratios):8.2f} lhpipe / bare")
    print(f"goal                   ≥ {GOAL_RATIO}: {'met' if ratio >= GOAL_RATIO else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
