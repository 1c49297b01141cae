"""Helpers of the scale-out tests: an HTTP endpoint that counts what each record sent (and can
hold requests back), a paged feed for `from poll`, and group offsets summed over partitions.
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

from confluent_kafka import Consumer, KafkaError, TopicPartition
from engine_run import LhpipeRun, unique, wait_until

from lhpipe.stack.addresses import StackAddresses

#: How long a held request waits for the gate before it is answered 503 (below the 10 s
#: deadline of `to http`).
HOLD_SECONDS = 6.0


class Endpoint(ThreadingHTTPServer):
    """``POST /sink``: counts each body's ``id`` when answered 200. While :attr:`open` is not
    set, a request waits for it up to :data:`HOLD_SECONDS`, then gets 503 (a slow target).

    ``GET /items?after=N``: a feed of :attr:`items` items, :attr:`page` at a time, with the
    cursor ``next``; pages after :attr:`gate_after` wait for :attr:`feed_gate`. Every
    ``after`` asked is recorded, in order."""

    daemon_threads = True
    request_queue_size = 256

    def __init__(self, items: int = 0, page: int = 20, gate_after: int | None = None) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.lock = threading.Lock()
        self.accepted: Counter[str] = Counter()
        self.open = threading.Event()
        self.open.set()
        self.items = items
        self.page = page
        self.gate_after = gate_after
        self.feed_gate = threading.Event()
        self.asked: list[str] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def distinct(self) -> int:
        with self.lock:
            return len(self.accepted)

    def total(self) -> int:
        with self.lock:
            return sum(self.accepted.values())

    def duplicates(self) -> int:
        with self.lock:
            return sum(n - 1 for n in self.accepted.values())


class _Handler(BaseHTTPRequestHandler):
    server: Endpoint
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        body = json.loads(self.rfile.read(length) or b"{}")
        if not self.server.open.wait(HOLD_SECONDS):
            self._answer(503, b'{"held": true}')
            return
        with self.server.lock:
            self.server.accepted[str(body.get("id"))] += 1
        self._answer(200, b"{}")

    def do_GET(self) -> None:
        query = parse_qs(urlparse(self.path).query, keep_blank_values=True)
        after_text = query.get("after", [""])[0]
        with self.server.lock:
            self.server.asked.append(after_text)
        after = int(after_text) if after_text else 0
        gate_after = self.server.gate_after
        if gate_after is not None and after >= gate_after:
            self.server.feed_gate.wait(120)
        numbers = range(after + 1, min(after + self.server.page, self.server.items) + 1)
        body = json.dumps(
            {
                "items": [{"id": f"item-{n}", "n": n} for n in numbers],
                "next": str(numbers[-1]) if numbers else None,
            }
        ).encode()
        self._answer(200, body)

    def _answer(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def serve(endpoint: Endpoint) -> Iterator[Endpoint]:
    thread = threading.Thread(target=endpoint.serve_forever, daemon=True)
    thread.start()
    try:
        yield endpoint
    finally:
        endpoint.open.set()
        endpoint.feed_gate.set()
        endpoint.shutdown()
        endpoint.server_close()


class GroupOffsets:
    """The committed offsets and ends of a topic's partitions (all of them unless
    ``partitions`` is given) for one group."""

    def __init__(
        self, stack: StackAddresses, group: str, topic: str, partitions: int | None = None
    ) -> None:
        self.topic = topic
        self.group = group
        self._bootstrap = stack.kafka_bootstrap
        self._consumer = Consumer(
            {
                "bootstrap.servers": stack.kafka_bootstrap,
                "group.id": group,  # never joins: committed() only reads the group's offsets
                "enable.auto.commit": False,
            }
        )
        if partitions is None:
            metadata = self._consumer.list_topics(topic, timeout=10)
            partitions = len(metadata.topics[topic].partitions)
        self.partitions = partitions

    def committed(self) -> list[int]:
        tps = [TopicPartition(self.topic, p) for p in range(self.partitions)]
        try:
            found = self._consumer.committed(tps, timeout=10)
        except Exception:
            return [-1] * self.partitions
        return [max(tp.offset, 0) for tp in sorted(found, key=lambda tp: tp.partition)]

    def ends(self) -> list[int]:
        """Per partition, the offset after its last record. On a transactional topic (the
        LittleHorse output topic) that is not the high watermark: a transaction's commit marker
        takes an offset too and is never delivered, so no consumer ever commits past it."""
        return [self._end_of(p) for p in range(self.partitions)]

    def _end_of(self, partition: int) -> int:
        tp = TopicPartition(self.topic, partition)
        low, high = self._consumer.get_watermark_offsets(tp, timeout=10)
        if high <= low:
            return high
        reader = Consumer(
            {
                "bootstrap.servers": self._bootstrap,
                "group.id": f"{self.group}-ends",  # never joins: assign() and no commits
                "enable.auto.commit": False,
                "enable.partition.eof": True,
                "isolation.level": "read_committed",
            }
        )
        try:
            reader.assign([TopicPartition(self.topic, partition, max(low, high - 200))])
            last = None
            while True:
                message = reader.poll(10)
                if message is None:
                    raise AssertionError(f"no end of {self.topic}[{partition}] within 10 s")
                if message.error() is None:
                    last = message.offset()
                elif message.error().code() == KafkaError._PARTITION_EOF:
                    break
        finally:
            reader.close()
        # The last 200 offsets were all markers (they never come so many in a row): take the
        # watermark, which can only make a wait stricter.
        return high if last is None else last + 1

    def wait_committed_to_the_end(self, timeout: float = 120.0) -> None:
        """Until the group has committed every partition up to where it ends now: whatever
        its processes do with the records so far (deliver them, again too), they have done."""
        ends = self.ends()
        wait_until(
            lambda: all(c >= e for c, e in zip(self.committed(), ends, strict=True)),
            timeout,
            f"{self.group} to commit {self.topic} up to {ends}",
            every=0.5,
        )

    def close(self) -> None:
        self._consumer.close()


def state_of(run: LhpipeRun, pipeline: str) -> dict[str, Any] | None:
    """The pipeline's entry in ``/readyz`` whatever its status code, or None."""
    answer = run.readyz()
    if answer is None:
        return None
    entry: dict[str, Any] | None = answer[1].get("pipelines", {}).get(pipeline)
    return entry


def wait_running(run: LhpipeRun, pipeline: str, timeout: float = 60.0) -> dict[str, Any]:
    """Until the pipeline runs or stands by (a held target may make it not ready)."""

    def running() -> dict[str, Any] | None:
        if run.process.poll() is not None:
            raise AssertionError(f"lhpipe exited with {run.process.returncode}:\n{run.log()}")
        entry = state_of(run, pipeline)
        return entry if entry is not None and entry["state"] in ("running", "standby") else None

    found: dict[str, Any] = wait_until(running, timeout, f"{pipeline} to run")
    return found


def group_name(prefix: str) -> str:
    return unique(prefix)
