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
against it. Each round prints both CPU figures: lhpipe's from its start and after its first
commit (read from ``/proc`` when the first commit is seen), the bare loop's for its whole run,
and the ratios the goals of issue 17 name (rate after the first commit ≥ 0.95 x the bare
loop's best, CPU per record after the first commit ≤ 1.2 x the bare loop's, first commit
under 1 s).

``--target`` picks the LittleHorse call: ``run_wf`` (the default: a WfSpec with one STR
variable and no tasks), ``post_event`` (``PutExternalEvent`` of an STR ExternalEventDef, each
record to its own WfRun id, which LittleHorse stores without the WfRun existing) or
``correlate`` (``PutCorrelatedEvent`` of an ExternalEventDef with a correlated-event config,
each record its own key); ``all`` runs the three one after the other. The records carry no Kafka
key and the ids and keys come from the value, so lhpipe's per-key order constrains nothing the
bare loop is free of.

With ``--secure`` (the stack started with ``lhpipe stack up --secure``, docs/security.md) both
sides go through the secured listeners: lhpipe with the settings ``lhpipe stack env --secure``
prints (Kafka over SASL_SSL with SCRAM, or OAuth with ``--kafka-auth oauth``; LittleHorse over
TLS with OAuth tokens of the realm), and the bare loop over the same TLS channel with the same
token (lhpipe's own channel and token plugin: the cost of TLS and OAuth on gRPC is in both).
Records are written and offsets read on the open listener, which measures nothing.

Run: ``.venv/bin/python bench/kafka_to_lh.py [--records N] [--concurrency N] [--rounds N]
[--sweep] [--target run_wf|post_event|correlate|all] [--secure [--kafka-auth scram|oauth]]``.
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
from typing import Any

import grpc
from _stack import (
    KAFKA,
    LH_HOST,
    LH_PORT,
    LHPIPE,
    free_port,
    register_wf_specs,
    stop,
    wait_until_found,
)
from confluent_kafka import ConsumerGroupTopicPartitions, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]
from littlehorse.model import (
    CorrelatedEventConfig,
    ExternalEventDefId,
    LittleHorseStub,
    PutCorrelatedEventRequest,
    PutExternalEventDefRequest,
    PutExternalEventRequest,
    ReturnType,
    RunWfRequest,
    TypeDefinition,
    VariableType,
    VariableValue,
    WfRunId,
)
from littlehorse.workflow import Workflow, WorkflowThread

#: Issue 17's goals: the rate after the first commit against the bare loop's best, lhpipe's CPU
#: per record after the first commit against the bare loop's, and the time to the first commit.
GOAL_RATIO = 0.95
GOAL_CPU_RATIO = 1.2
GOAL_FIRST_COMMIT_SECONDS = 1.0
TARGETS = ("run_wf", "post_event", "correlate")
TENANT = "default"
DEFAULT_CONCURRENCY = 64  # the bare loop without --sweep (lhpipe starts at 64 and adapts)
#: The bare loop's concurrencies with ``--sweep``: its best is the limit lhpipe is held to.
SWEEP = (64, 128, 256, 512)
PHASE_TIMEOUT_SECONDS = 600.0
#: With --secure: the settings of the secure stack (lhpipe's environment, the bare loop's channel).
SECURE: dict[str, str] = {}
RPC_DEADLINE_SECONDS = 10.0


@dataclass
class LhpipeTiming:
    total_seconds: float
    first_commit_seconds: float
    first_committed: int
    cpu_seconds: float
    first_commit_cpu_seconds: float

    def rate(self, records: int) -> float:
        return records / self.total_seconds

    def steady_rate(self, records: int) -> float:
        return (records - self.first_committed) / (self.total_seconds - self.first_commit_seconds)

    def steady_cpu_per_record(self, records: int) -> float:
        return (self.cpu_seconds - self.first_commit_cpu_seconds) / (records - self.first_committed)


@dataclass(frozen=True)
class Target:
    """One LittleHorse call: the pipeline's target, the records' values, the bare request."""

    kind: str
    name: str  # the WfSpec or the ExternalEventDef

    def pipeline_target(self) -> str:
        if self.kind == "run_wf":
            return f'run_wf "{self.name}"'
        if self.kind == "post_event":
            return f'post_event "{self.name}" {{ wf_run_id = value.wf\n    content = value.note }}'
        return f'correlate "{self.name}" {{ key = value.ck\n    content = value.note }}'

    def value(self, topic: str, i: int) -> dict[str, str]:
        if self.kind == "run_wf":
            return {"name": f"customer-{i}"}
        if self.kind == "post_event":
            return {"wf": f"w{i}", "note": f"note-{i}"}
        return {"ck": f"{topic}-c{i}", "note": f"note-{i}"}

    def rpc(self, stub: LittleHorseStub) -> Any:
        return {
            "run_wf": stub.RunWf,
            "post_event": stub.PutExternalEvent,
            "correlate": stub.PutCorrelatedEvent,
        }[self.kind]

    def request(self, run_id: str, topic: str, i: int) -> Any:
        """The request lhpipe sends for record ``i``, with the bare run's own id (or key)."""
        if self.kind == "run_wf":
            return RunWfRequest(
                wf_spec_name=self.name,
                id=run_id,
                variables={"name": VariableValue(str=f"customer-{i}")},
            )
        event = ExternalEventDefId(name=self.name)
        if self.kind == "post_event":
            return PutExternalEventRequest(
                wf_run_id=WfRunId(id=f"w{i}"),
                external_event_def_id=event,
                guid=run_id,
                content=VariableValue(str=f"note-{i}"),
            )
        return PutCorrelatedEventRequest(
            key=run_id, external_event_def_id=event, content=VariableValue(str=f"note-{i}")
        )


def prepare_target(kind: str) -> Target:
    """Register what ``kind`` calls and wait until the server shows it."""
    if kind == "run_wf":
        name = f"bench-noop-{uuid.uuid4().hex[:8]}"
        register_wf_spec(name)
        print(f"run_wf: WfSpec {name}, one STR variable, no tasks")
        return Target(kind, name)
    name = f"bench-event-{uuid.uuid4().hex[:8]}"
    stub = LittleHorseStub(grpc.insecure_channel(f"{LH_HOST}:{LH_PORT}"))
    stub.PutExternalEventDef(
        PutExternalEventDefRequest(
            name=name,
            content_type=ReturnType(return_type=TypeDefinition(primitive_type=VariableType.STR)),
            correlated_event_config=CorrelatedEventConfig() if kind == "correlate" else None,
        )
    )
    wait_until_found(lambda: stub.GetExternalEventDef(ExternalEventDefId(name=name)))
    print(f"{kind}: ExternalEventDef {name} (STR content)")
    return Target(kind, name)


def register_wf_spec(name: str) -> None:
    """A WfSpec with one STR variable ``name`` and no tasks; wait until the server shows it."""

    def entrypoint(wf: WorkflowThread) -> None:
        wf.declare_str("name")

    register_wf_specs([Workflow(name, entrypoint)])


def produce_records(topic: str, count: int, partitions: int, target: Target | None = None) -> None:
    admin = AdminClient({"bootstrap.servers": KAFKA})
    new = NewTopic(topic, num_partitions=partitions, replication_factor=1)
    admin.create_topics([new])[topic].result(timeout=30)
    producer = Producer({"bootstrap.servers": KAFKA, "linger.ms": 20, "enable.idempotence": True})
    for i in range(count):
        value = target.value(topic, i) if target is not None else {"name": f"customer-{i}"}
        producer.produce(topic, value=json.dumps(value).encode())
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
    target: Target, topic: str, count: int, partitions: int, concurrency: int, name: str = "bare"
) -> tuple[float, float]:
    """The limit: the target's call for every record, ``concurrency`` in flight,
    ALREADY_EXISTS is ok. Returns the elapsed and the CPU seconds of this process."""
    # The same ids lhpipe derives (<name>-<topic>-<partition>-<offset>), under another name
    # (one per run of a sweep: a WfRun id, guid or key sent twice would be a cheap
    # ALREADY_EXISTS).
    per_partition = -(-count // partitions)
    ids = [
        f"{name}-{topic}-{p}-{o}".lower() for p in range(partitions) for o in range(per_partition)
    ][:count]
    channel = lh_channel()
    rpc = target.rpc(LittleHorseStub(channel))
    metadata = (("tenantid", TENANT),)
    next_index = 0
    failures: list[str] = []

    async def worker() -> None:
        nonlocal next_index
        while next_index < count:
            i = next_index
            next_index += 1
            request = target.request(ids[i], topic, i)
            try:
                await rpc(request, timeout=RPC_DEADLINE_SECONDS, metadata=metadata)
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


def lh_channel() -> grpc.aio.Channel:
    """The bare loop's channel: plaintext, or with --secure TLS and OAuth as lhpipe's."""
    if not SECURE:
        return grpc.aio.insecure_channel(f"{LH_HOST}:{LH_PORT}")
    from lhpipe.clients.littlehorse import LittleHorseConnection
    from lhpipe.settings import Settings

    return LittleHorseConnection.from_settings(Settings(environ=SECURE)).open_channel()


def committed_total(admin: AdminClient, group: str, topic: str, partitions: int) -> int:
    request = ConsumerGroupTopicPartitions(
        group, [TopicPartition(topic, p) for p in range(partitions)]
    )
    result = admin.list_consumer_group_offsets([request])[group].result(timeout=10)
    return sum(max(0, tp.offset) for tp in result.topic_partitions)


def run_lhpipe(
    target: Target, topic: str, count: int, partitions: int, workdir: Path
) -> LhpipeTiming:
    pipeline = f"bench_{uuid.uuid4().hex[:8]}"
    group = f"lhpipe-{pipeline}"
    source = workdir / f"{pipeline}.lhp"
    source.write_text(
        f'pipeline {pipeline} {{\n  from topic "{topic}" {{ value = json }}\n'
        f"  {target.pipeline_target()}\n}}\n",
        encoding="utf-8",
    )
    admin = AdminClient({"bootstrap.servers": KAFKA})
    log_path = workdir / f"{pipeline}.log"
    with log_path.open("wb") as log_file:
        started = time.perf_counter()
        process = subprocess.Popen(
            [str(LHPIPE), "run", str(source), "--port", str(free_port())],
            env={**os.environ, **SECURE},
            stdout=log_file,
            stderr=subprocess.STDOUT,
            cwd=workdir,
        )
        try:
            first_at: float | None = None
            first_committed = 0
            first_cpu = 0.0
            while True:
                done = committed_total(admin, group, topic, partitions)
                now = time.perf_counter()
                if done and first_at is None:
                    first_at, first_committed = now - started, done
                    first_cpu = cpu_seconds(process.pid)
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
    return LhpipeTiming(total, first_at, first_committed, cpu, first_cpu)


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


def measure_limit(args: argparse.Namespace, target: Target, topic: str) -> BareTiming:
    """Run and print (a): at ``--concurrency`` in flight, or with ``--sweep`` at each of
    :data:`SWEEP` in flight; return the fastest."""
    count: int = args.records
    runs = []
    for concurrency in SWEEP if args.sweep else (args.concurrency,):
        seconds, cpu = asyncio.run(
            bare_loop(target, topic, count, args.partitions, concurrency, name=f"bare{concurrency}")
        )
        print(
            f"  (a) bare grpc.aio, {concurrency:3d} in flight: {seconds:6.2f} s "
            f"{count / seconds:8.0f} records/s, {1000 * cpu / count:.3f} CPU ms/record"
        )
        runs.append(BareTiming(concurrency, seconds, cpu))
    best = min(runs, key=lambda run: run.seconds)
    if args.sweep:
        print(f"      the limit: the bare loop at {best.concurrency} in flight")
    return best


def measure_lhpipe(
    args: argparse.Namespace, target: Target, topic: str, workdir: Path
) -> LhpipeTiming:
    """Run and print (b)."""
    count: int = args.records
    timing = run_lhpipe(target, topic, count, args.partitions, workdir)
    print(
        f"  (b) lhpipe run, start to last commit: {timing.total_seconds:6.2f} s "
        f"{timing.rate(count):8.0f} records/s, "
        f"{1000 * timing.cpu_seconds / count:.3f} CPU ms/record (start-up included)"
    )
    print(
        f"      first commit after {timing.first_commit_seconds:.2f} s "
        f"({timing.first_committed} records); after it "
        f"{timing.steady_rate(count):.0f} records/s, "
        f"{1000 * timing.steady_cpu_per_record(count):.3f} CPU ms/record"
    )
    return timing


@dataclass
class Results:
    """Per round: the figures the goals name."""

    bare_rates: list[float]
    lhpipe_rates: list[float]
    ratios: list[float]
    steady_ratios: list[float]
    cpu_ratios: list[float]
    steady_cpu_ratios: list[float]
    first_commits: list[float]


def run_target(args: argparse.Namespace, target: Target, workdir: Path) -> Results:
    count: int = args.records
    results = Results([], [], [], [], [], [], [])
    for round_number in range(1, args.rounds + 1):
        topic = f"bench-{uuid.uuid4().hex[:8]}"
        produce_records(topic, count, args.partitions, target)
        print(f"{target.kind} round {round_number}: {count} records in topic {topic}")
        try:
            # Alternate which side goes first: the server may slow down as it fills up.
            if round_number % 2:
                bare = measure_limit(args, target, topic)
                timing = measure_lhpipe(args, target, topic, workdir)
            else:
                timing = measure_lhpipe(args, target, topic, workdir)
                bare = measure_limit(args, target, topic)
        finally:
            delete_topic(topic)
        bare_rate = count / bare.seconds
        results.bare_rates.append(bare_rate)
        results.lhpipe_rates.append(timing.rate(count))
        results.ratios.append(timing.rate(count) / bare_rate)
        results.steady_ratios.append(timing.steady_rate(count) / bare_rate)
        results.cpu_ratios.append(timing.cpu_seconds / bare.cpu_seconds)
        results.steady_cpu_ratios.append(
            timing.steady_cpu_per_record(count) / (bare.cpu_seconds / count)
        )
        results.first_commits.append(timing.first_commit_seconds)
        print(
            f"      rate ratio {results.ratios[-1]:.2f}, after the first commit "
            f"{results.steady_ratios[-1]:.2f}; CPU per record lhpipe / bare "
            f"{results.cpu_ratios[-1]:.2f}, after the first commit "
            f"{results.steady_cpu_ratios[-1]:.2f}"
        )
    return results


def report(args: argparse.Namespace, target: Target, results: Results) -> None:
    median = statistics.median
    steady = median(results.steady_ratios)
    steady_cpu = median(results.steady_cpu_ratios)
    first = median(results.first_commits)

    def verdict(ok: bool) -> str:
        return "met" if ok else "NOT met"

    print()
    print(f"{target.kind}: median of {args.rounds} round(s)")
    print(f"bare grpc.aio loop (best) {median(results.bare_rates):8.0f} records/s")
    print(f"lhpipe run                {median(results.lhpipe_rates):8.0f} records/s")
    print(f"rate ratio                {median(results.ratios):8.2f}   (start-up included)")
    print(
        f"  after the first commit  {steady:8.2f}   goal ≥ {GOAL_RATIO}: "
        f"{verdict(steady >= GOAL_RATIO)}"
    )
    print(f"CPU per record ratio      {median(results.cpu_ratios):8.2f}   (start-up included)")
    print(
        f"  after the first commit  {steady_cpu:8.2f}   goal ≤ {GOAL_CPU_RATIO}: "
        f"{verdict(steady_cpu <= GOAL_CPU_RATIO)}"
    )
    print(
        f"first commit              {first:8.2f} s goal < {GOAL_FIRST_COMMIT_SECONDS} s: "
        f"{verdict(first < GOAL_FIRST_COMMIT_SECONDS)}"
    )


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
    parser.add_argument("--target", choices=(*TARGETS, "all"), default="run_wf")
    parser.add_argument(
        "--secure", action="store_true", help="through the secure stack's listeners (TLS, auth)"
    )
    parser.add_argument("--kafka-auth", choices=("scram", "oauth"), default="scram")
    args = parser.parse_args()
    if args.secure:
        from lhpipe.stack.certs import stack_certs
        from lhpipe.stack.env import kafka_secure_settings, littlehorse_secure_settings

        certs = stack_certs()
        if certs is None:
            raise SystemExit("--secure needs `lhpipe stack up --secure` first")
        SECURE.update(kafka_secure_settings(certs, args.kafka_auth))
        SECURE.update(littlehorse_secure_settings(certs, "oauth"))
        print(f"secure: Kafka SASL_SSL ({args.kafka_auth}), LittleHorse TLS + OAuth")
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    kinds = TARGETS if args.target == "all" else (args.target,)
    with tempfile.TemporaryDirectory(prefix="lhpipe-bench-") as tmp:
        done = []
        for kind in kinds:
            target = prepare_target(kind)
            done.append((target, run_target(args, target, Path(tmp))))
    for target, results in done:
        report(args, target, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
