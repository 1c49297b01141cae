"""Benchmark: one machine's cores, ``lhpipe run --workers 1`` against ``--workers 2``
(docs/operations.md, "Workers"; the goal: 2 workers do at least 1.6 times the work of 1).

Against the running local stack (``lhpipe stack up``), in one run:

1. Kafka → Kafka, CPU-bound in lhpipe: a pipeline ``from topic`` (JSON orders of about 600
   bytes with a nested customer and four line items) with a ``where``, three ``let`` and ``to
   topic`` of a reshaped JSON value (string functions, arithmetic over the items, a SHA-256), on
   a fresh topic of ``--partitions`` partitions (6) for each side, with ``--in-flight`` records
   in flight per process (:data:`IN_FLIGHT`). lhpipe is started on the empty topic and waited
   for: every worker ready in ``/readyz`` and the group stable with every partition assigned.
   Then ``--records`` records (100,000, encoded beforehand) are produced and the clock runs from
   the first one until the group's committed offsets reach the end of the topic (an offset is
   committed only after the output topic acknowledged the record). Start-up and the group's
   rebalances are therefore left out; the output topic's record count is checked.
2. Webhook: ``wrk`` (1 thread, ``--connections`` connections, ``--duration`` seconds after a
   2 s warm-up) against a webhook with bench/webhook.py's HMAC check and 10-field schema, in
   direct mode with ``to log`` (``--webhook direct``, the default: no broker in the way, so the
   figure is lhpipe's own) or produced to a fresh topic (``--webhook topic``).

Each side's rate, the workers' CPU time per record or request (summed over the workers, from
``/proc``), and the scaling factor (rate with 2 workers / rate with 1) with the goal are printed.
``--rounds N`` measures each part N times, alternating which side goes first, and reports the
median factor. The machine's cores and load average are printed too: Kafka, LittleHorse and the
load generator run on the same cores, so on a small machine the second worker mostly competes
with them. Every phase is bounded in time; every lhpipe process is stopped, and every topic
deleted, whatever happens.

Run: ``.venv/bin/python bench/scale.py [--records 100000] [--partitions 6] [--in-flight 512]
[--duration 10] [--connections 64] [--rounds 1] [--webhook direct|topic]``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from _stack import KAFKA, LHPIPE, free_port, stop
from confluent_kafka import ConsumerGroupState, Producer
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]
from kafka_to_lh import committed_total, delete_topic
from webhook import BODY, PATH, SECRET, run_wrk

GOAL_FACTOR = 1.6
PHASE_TIMEOUT_SECONDS = 300.0
READY_TIMEOUT_SECONDS = 60.0
WARM_UP_SECONDS = 2
#: Records in flight per pipeline in part 1 (``LHPIPE_MAX_IN_FLIGHT``): at lhpipe's default of
#: 64, one process mostly waits for the broker's acknowledgements and a second one scales by
#: waiting alongside; at this many, one process is busy computing.
IN_FLIGHT = 512

KAFKA_PIPELINE = """
pipeline %(name)s {
  from topic "%(source)s" { value = json }
  where value.status != "test" and len(value.items) > 0
  let items = value.items
  let subtotal = int(items[0].price_cents) * int(items[0].quantity)
    + int(items[1].price_cents) * int(items[1].quantity)
    + int(items[2].price_cents) * int(items[2].quantity)
    + int(items[3].price_cents) * int(items[3].quantity)
  let email = lower(trim(str(value.customer.email)))
  to topic "%(target)s" {
    key = str(value.order_id)
    value = {
      order_id = value.order_id
      customer = upper(trim(str(value.customer.name)))
      customer_ref = sha256(email)
      domain = concat("@", str(value.customer.country))
      country = value.customer.country ?? "unknown"
      lines = len(items)
      skus = concat(str(items[0].sku), ",", str(items[1].sku), ",", str(items[2].sku), ",",
        str(items[3].sku))
      subtotal_cents = subtotal
      tax_cents = subtotal * 19 / 100
      total_cents = subtotal + subtotal * 19 / 100 + int(value.shipping_cents ?? 0)
      big = subtotal > 100000
      coupon = coalesce(value.coupon, "none")
      channel = lower(str(value.channel))
      note = trim(str(value.note ?? ""))
    }
  }
}
"""

WEBHOOK_SCHEMA = """
schema Applicant {
  applicant_id: string  email: string  name: string  country: string  age: int
  score: double  verified: boolean  tags: [string]  address: string  note: string?
}
"""

WEBHOOK_DIRECT = """
webhook applicants {
  path = "%(path)s"
  auth = hmac { preset = github  secret = env("BENCH_SECRET") }
  body = Applicant
}

pipeline applicants_run {
  from webhook applicants
  to log
}
"""

WEBHOOK_TOPIC = """
webhook applicants {
  path = "%(path)s"
  auth = hmac { preset = github  secret = env("BENCH_SECRET") }
  body = Applicant
  topic = "%(topic)s"
}
"""


# -- the lhpipe processes ------------------------------------------------------------------------


@dataclass
class Running:
    """``lhpipe run --workers N`` started by this benchmark."""

    process: subprocess.Popen[bytes]
    port: int
    workers: int
    log: Path

    def output(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")[-3000:]

    def worker_pids(self) -> list[int]:
        """The workers: the parent's children, or the process itself with one worker."""
        if self.workers == 1:
            return [self.process.pid]
        return children(self.process.pid)

    def cpu_seconds(self) -> float:
        return sum(cpu_seconds(pid) for pid in self.worker_pids())


def children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text(encoding="ascii").rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:  # the 4th field, ppid
            found.append(int(stat.parent.name))
    return found


def cpu_seconds(pid: int) -> float:
    """User and system CPU time of a process so far (0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text(encoding="ascii").rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start_lhpipe(folder: Path, workers: int, label: str, env: dict[str, str]) -> Running:
    port = free_port()
    command = [str(LHPIPE), "run", str(folder / "pipelines"), "--port", str(port)]
    log = folder / f"{label}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [*command, "--workers", str(workers)],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=folder,
            env={**os.environ, **env},
        )
    return Running(process, port, workers, log)


def wait_ready(running: Running) -> None:
    """Until every worker has answered ``/readyz`` 200 (each request on a new connection, which
    the kernel gives to any worker)."""
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    ready: set[int] = set()
    while len(ready) < running.workers:
        if running.process.poll() is not None:
            raise SystemExit(
                f"lhpipe run exited with {running.process.returncode}:\n{running.output()}"
            )
        if time.monotonic() > deadline:
            raise SystemExit(f"only workers {sorted(ready)} were ready in time")
        try:
            with urllib.request.urlopen(
                f"http://127.0.0.1:{running.port}/readyz", timeout=5
            ) as answer:
                ready.add(json.load(answer)["worker"]["index"])
        except (urllib.error.URLError, OSError):
            time.sleep(0.1)


# -- 1. Kafka → Kafka ----------------------------------------------------------------------------


def create_topics(admin: AdminClient, names: list[str], partitions: int) -> None:
    new = [NewTopic(name, num_partitions=partitions, replication_factor=1) for name in names]
    for future in admin.create_topics(new).values():
        future.result(timeout=30)


def wait_group_stable(admin: AdminClient, group: str, members: int, partitions: int) -> None:
    """Until the group is stable with ``members`` members holding every partition."""
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    while True:
        description = admin.describe_consumer_groups([group])[group].result(timeout=10)
        assigned = sum(len(m.assignment.topic_partitions) for m in description.members)
        if (
            description.state == ConsumerGroupState.STABLE
            and len(description.members) == members
            and assigned == partitions
        ):
            return
        if time.monotonic() > deadline:
            raise SystemExit(
                f"group {group}: {description.state}, {len(description.members)} member(s), "
                f"{assigned} partition(s) assigned after {READY_TIMEOUT_SECONDS:.0f} s"
            )
        time.sleep(0.2)


def orders(count: int) -> list[tuple[bytes, bytes]]:
    """``count`` order records (key, JSON value) of about 600 bytes, encoded before the clock
    runs: encoding them is the benchmark's work, and it shares the cores with lhpipe."""
    countries = ["DE", "FR", "NL", "US", "JP"]
    channels = ["Web", "App", "Partner"]
    records = []
    for i in range(count):
        value = {
            "order_id": f"order-{i}",
            "status": "new",
            "channel": channels[i % len(channels)],
            "customer": {
                "name": f"  Customer Number {i % 977}  ",
                "email": f" Customer.{i % 977}@Example.COM ",
                "country": countries[i % len(countries)],
            },
            "items": [
                {
                    "sku": f"SKU-{(i + n) % 5000:05d}",
                    "price_cents": 199 + (i * 37 + n) % 20_000,
                    "quantity": 1 + (i + n) % 4,
                }
                for n in range(4)
            ],
            "shipping_cents": 495,
            "coupon": None if i % 3 else "WELCOME10",
            "note": "  leave at the door  " if i % 7 == 0 else None,
        }
        records.append((f"order-{i}".encode(), json.dumps(value).encode()))
    return records


def produce(topic: str, records: list[tuple[bytes, bytes]]) -> None:
    producer = Producer({"bootstrap.servers": KAFKA, "linger.ms": 20, "enable.idempotence": True})
    for i, (key, value) in enumerate(records):
        producer.produce(topic, key=key, value=value)
        if i % 10_000 == 0:
            producer.poll(0)
    if producer.flush(60) != 0:
        raise SystemExit("could not produce the records")


def records_in(admin: AdminClient, topic: str, partitions: int) -> int:
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": KAFKA, "group.id": "bench-scale-count"})
    try:
        total = 0
        for partition in range(partitions):
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
            total += high - low
        return total
    finally:
        consumer.close()


def environment(args: argparse.Namespace) -> dict[str, str]:
    """What ``lhpipe run`` gets in its environment for part 1."""
    return {"LHPIPE_MAX_IN_FLIGHT": str(args.in_flight)} if args.in_flight else {}


def kafka_side(args: argparse.Namespace, folder: Path, workers: int) -> float:
    """Part 1 with ``workers`` workers: prints the line, returns records/s."""
    count: int = args.records
    partitions: int = args.partitions
    tag = uuid.uuid4().hex[:8]
    name = f"scale_{tag}"
    source, target, group = f"bench-scale-in-{tag}", f"bench-scale-out-{tag}", f"lhpipe-{name}"
    admin = AdminClient({"bootstrap.servers": KAFKA})
    create_topics(admin, [source, target], partitions)
    pipelines = folder / "pipelines"
    shutil.rmtree(pipelines, ignore_errors=True)
    pipelines.mkdir()
    (pipelines / "scale.lhp").write_text(
        KAFKA_PIPELINE % {"name": name, "source": source, "target": target}, encoding="utf-8"
    )
    records = orders(count)
    running = start_lhpipe(folder, workers, f"kafka-{workers}-{tag}", environment(args))
    try:
        wait_ready(running)
        wait_group_stable(admin, group, workers, partitions)
        cpu_before = running.cpu_seconds()
        started = time.perf_counter()
        produce(source, records)
        produced = time.perf_counter() - started
        while (done := committed_total(admin, group, source, partitions)) < count:
            if running.process.poll() is not None:
                raise SystemExit(
                    f"lhpipe run exited with {running.process.returncode}:\n{running.output()}"
                )
            if time.perf_counter() - started > PHASE_TIMEOUT_SECONDS:
                raise SystemExit(f"lhpipe committed {done} of {count} records in time")
            time.sleep(0.05)
        seconds = time.perf_counter() - started
        cpu = running.cpu_seconds() - cpu_before
        written = records_in(admin, target, partitions)
    finally:
        stop(running.process)
        for topic in (source, target):
            delete_topic(topic)
    rate = count / seconds
    print(
        f"  --workers {workers}: {seconds:6.2f} s {rate:8.0f} records/s, "
        f"{1000 * cpu / count:.3f} CPU ms/record (the records produced in {produced:.2f} s; "
        f"{written} written to the output topic)"
    )
    if written < count:
        raise SystemExit(f"only {written} of {count} records reached the output topic")
    return rate


# -- 2. webhook ----------------------------------------------------------------------------------


def webhook_side(args: argparse.Namespace, folder: Path, workers: int) -> float:
    """Part 2 with ``workers`` workers: prints the line, returns requests/s."""
    tag = uuid.uuid4().hex[:8]
    topic = f"bench-scale-webhook-{tag}"
    pipelines = folder / "pipelines"
    shutil.rmtree(pipelines, ignore_errors=True)
    pipelines.mkdir()
    route = WEBHOOK_DIRECT if args.webhook == "direct" else WEBHOOK_TOPIC
    (pipelines / "webhook.lhp").write_text(
        WEBHOOK_SCHEMA + route % {"path": PATH, "topic": topic}, encoding="utf-8"
    )
    running = start_lhpipe(folder, workers, f"webhook-{workers}-{tag}", {"BENCH_SECRET": SECRET})
    try:
        wait_ready(running)
        # Warm-up: first connections, the producer's metadata, the registry in topic mode.
        pid = running.process.pid  # run_wrk's own CPU figure is the parent's; ours sums workers
        run_wrk(running.port, WARM_UP_SECONDS, args.connections, folder, "warm", pid)
        cpu_before = running.cpu_seconds()
        result = run_wrk(running.port, args.duration, args.connections, folder, "measure", pid)
        cpu = running.cpu_seconds() - cpu_before
    finally:
        stop(running.process)
        if args.webhook == "topic":
            delete_topic(topic)
    if result.non2xx or result.socket_errors:
        print(f"  warning: {result.non2xx} non-2xx answers, {result.socket_errors} socket errors")
    print(
        f"  --workers {workers}: {result.rate:8.0f} req/s (p50 {result.p50_ms:.1f} ms, "
        f"p99 {result.p99_ms:.1f} ms), {1e6 * cpu / max(result.requests, 1):.0f} µs CPU/req"
    )
    return result.rate


# -- orchestration -------------------------------------------------------------------------------


def compare(title: str, unit: str, rounds: int, side: Callable[[int], float]) -> float:
    """Measure ``side`` with 1 and 2 workers ``rounds`` times (alternating which goes first),
    print the medians and the factor; return the median factor."""
    print(title)
    ones: list[float] = []
    twos: list[float] = []
    factors: list[float] = []
    for round_number in range(rounds):
        order = (1, 2) if round_number % 2 == 0 else (2, 1)
        rates = {workers: side(workers) for workers in order}
        ones.append(rates[1])
        twos.append(rates[2])
        factors.append(rates[2] / rates[1])
    factor = statistics.median(factors)
    print(
        f"  median of {rounds}: {statistics.median(ones):.0f} {unit} with 1 worker, "
        f"{statistics.median(twos):.0f} with 2: x{factor:.2f} "
        f"(goal ≥ {GOAL_FACTOR}: {'met' if factor >= GOAL_FACTOR else 'NOT met'})"
    )
    return factor


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument("--in-flight", type=int, default=IN_FLIGHT)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--webhook", choices=["direct", "topic"], default="direct")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print("wrk is not installed (apt-get install -y wrk)", file=sys.stderr)
        return 2
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    folder = Path(tempfile.mkdtemp(prefix="lhpipe-bench-scale-"))
    try:
        print(
            f"{os.cpu_count()} cores; load average (1, 5, 15 min): "
            + ", ".join(f"{load:.2f}" for load in os.getloadavg())
        )
        kafka = compare(
            f"Kafka → Kafka: {args.records} JSON records, {args.partitions} partitions, "
            "where, 3 let, to topic (JSON), first record produced to last commit",
            "records/s",
            args.rounds,
            lambda workers: kafka_side(args, folder, workers),
        )
        hook = compare(
            f"webhook ({args.webhook} mode{', to log' if args.webhook == 'direct' else ''}), "
            f"wrk 1 thread, {args.connections} connections, {args.duration:.0f} s, "
            f"{len(BODY)}-byte signed JSON body checked against a 10-field schema",
            "req/s",
            args.rounds,
            lambda workers: webhook_side(args, folder, workers),
        )
        print(
            "load average (1, 5, 15 min): " + ", ".join(f"{load:.2f}" for load in os.getloadavg())
        )
        print(f"scaling, 2 workers / 1: Kafka → Kafka x{kafka:.2f}, webhook x{hook:.2f}")
        return 0
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
