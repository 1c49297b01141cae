"""Helpers for the engine's end-to-end tests: `lhpipe run` as a real subprocess over a temporary
folder of `.lhp` files, Kafka topics, records in and dead letters out, consumer-group offsets,
and counting what LittleHorse holds.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]
from free_ports import free_port
from littlehorse.config import LHConfig
from littlehorse.model import (
    ExternalEventList,
    ListExternalEventsRequest,
    SearchWfRunRequest,
    WfRunId,
)
from prometheus_client.parser import text_string_to_metric_families
from topic_reading import Offsets, ends, read, reader_config
from waiting import wait_for

from lhpipe.sources.poll import DEFAULT_STATE_TOPIC
from lhpipe.stack.addresses import StackAddresses

LHPIPE = str(Path(sys.executable).with_name("lhpipe"))
START_TIMEOUT_SECONDS = 60.0
SEARCH_INDEX_TIMEOUT_SECONDS = 240.0


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def wait_until(condition: Callable[[], Any], timeout: float, what: str, every: float = 0.25) -> Any:
    """:func:`waiting.wait_for` with the timeout first, as the integration tests write it."""
    return wait_for(condition, what, timeout, every)


# -- Kafka ---------------------------------------------------------------------------------------


def create_topic(stack: StackAddresses, topic: str, partitions: int = 1) -> None:
    admin = AdminClient({"bootstrap.servers": stack.kafka_bootstrap})
    futures = admin.create_topics(
        [NewTopic(topic, num_partitions=partitions, replication_factor=1)]
    )
    futures[topic].result(30)
    wait_until(lambda: topic in admin.list_topics(timeout=5).topics, 30, f"topic {topic} to exist")


def produce(
    stack: StackAddresses,
    topic: str,
    records: Iterable[tuple[bytes | None, bytes | None, Sequence[tuple[str, bytes]]]],
) -> int:
    """Write (key, value, headers) records in order; returns how many."""
    producer = Producer(
        {"bootstrap.servers": stack.kafka_bootstrap, "enable.idempotence": True, "linger.ms": 5}
    )
    count = 0
    for key, value, headers in records:
        while True:
            try:
                producer.produce(topic, key=key, value=value, headers=list(headers))
                break
            except BufferError:
                producer.poll(0.1)
        count += 1
        producer.poll(0)
    assert producer.flush(30) == 0
    return count


def read_all(
    stack: StackAddresses,
    topic: str,
    expected: int,
    timeout: float = 90.0,
    since: Offsets | None = None,
) -> list[Any]:
    """Read ``topic`` until at least ``expected`` records arrived and the reader is at the end
    of every partition; returns the messages (none for a topic that does not exist: nothing was
    written to it). Fails after ``timeout`` seconds.

    A topic the test created is read from its beginning; one it did not create (LittleHorse's
    output topic, the poll state topic) from ``since``, what :func:`topic_ends` gave before the
    test acted, so that what earlier runs left there costs nothing (tests/topic_reading.py).

    A record that is not there proves something only once whatever would have written it is
    done: read after an event that comes later (its writer stopped or acknowledged what it
    read, a record sent after it arrived), never after a pause."""
    consumer = Consumer(reader_config(stack.kafka_bootstrap, unique("reader")))
    try:
        return read(consumer, topic, expected, timeout, since)
    finally:
        consumer.close()


def topic_ends(stack: StackAddresses, topic: str) -> dict[int, int]:
    """Where each partition of ``topic`` ends now: what a test takes before it acts, to read
    only its own records from a topic it shares with earlier runs (:func:`read_all`)."""
    consumer = Consumer(reader_config(stack.kafka_bootstrap, unique("ends")))
    try:
        return ends(consumer, topic)
    finally:
        consumer.close()


def committed(stack: StackAddresses, group: str, topic: str, partitions: int = 1) -> list[int]:
    """The group's committed offset per partition (-1001 when none)."""
    consumer = Consumer({"bootstrap.servers": stack.kafka_bootstrap, "group.id": group})
    try:
        offsets = consumer.committed(
            [TopicPartition(topic, p) for p in range(partitions)], timeout=10
        )
    finally:
        consumer.close()
    return [tp.offset for tp in offsets]


def reset_to_earliest(stack: StackAddresses, group: str, topic: str, partitions: int = 1) -> None:
    """Point the (inactive) group back at the start of every partition of ``topic``."""
    from confluent_kafka import ConsumerGroupTopicPartitions

    admin = AdminClient({"bootstrap.servers": stack.kafka_bootstrap})
    request = ConsumerGroupTopicPartitions(
        group, [TopicPartition(topic, p, 0) for p in range(partitions)]
    )
    futures = admin.alter_consumer_group_offsets([request])
    futures[group].result(30)
    assert committed(stack, group, topic, partitions) == [0] * partitions


def poll_states_end(stack: StackAddresses) -> dict[int, int]:
    """Where the poll state topic ends now, for :func:`poll_state` (taken before the test
    starts its poller)."""
    return topic_ends(stack, DEFAULT_STATE_TOPIC)


def poll_state(stack: StackAddresses, pipeline: str, since: Offsets) -> dict[str, Any] | None:
    """The newest state of ``pipeline`` in the poll state topic, read from ``since``
    (:func:`poll_states_end`: the topic keeps one state for every poll pipeline any run on the
    stack ever had)."""
    found = None
    for message in read_all(stack, DEFAULT_STATE_TOPIC, 0, timeout=30, since=since):
        if message.key() == pipeline.encode():
            found = None if message.value() is None else json.loads(message.value())
    return found


# -- LittleHorse ---------------------------------------------------------------------------------


def wf_run_ids(config: LHConfig, wf_spec: str) -> set[str]:
    """Every WfRun id of ``wf_spec`` in LittleHorse's search index, page by page."""
    stub = config.stub()
    ids: set[str] = set()
    bookmark: bytes | None = None
    while True:
        request = SearchWfRunRequest(wf_spec_name=wf_spec, limit=1000)
        if bookmark:
            request.bookmark = bookmark
        page = stub.SearchWfRun(request)
        ids.update(result.id for result in page.results)
        if not page.bookmark:
            return ids
        bookmark = page.bookmark


def count_wf_runs(config: LHConfig, wf_spec: str) -> int:
    """Every WfRun of ``wf_spec`` in the search index (a WfRun id is unique)."""
    return len(wf_run_ids(config, wf_spec))


def settled_wf_run_count(config: LHConfig, wf_spec: str, expected: int) -> int:
    """The WfRun count once LittleHorse's search index holds ``expected`` WfRuns. It indexes
    them asynchronously (a repartition topic): on a busy server the index trails the WfRuns by
    seconds, at worst minutes, and no event tells when it has caught up, so no wait here shows
    that no WfRun more is coming. That is what the ids are for: run_wf names a WfRun after its
    record (key, header or position), so a record sent again is ALREADY_EXISTS, never a second
    WfRun (:meth:`LhpipeRun.metric` ``lhpipe_lh_already_exists_total`` counts them)."""

    def reached() -> tuple[int] | None:
        count = count_wf_runs(config, wf_spec)
        return (count,) if count >= expected else None

    (count,) = wait_until(
        reached,
        SEARCH_INDEX_TIMEOUT_SECONDS,
        f"{expected} WfRuns in LittleHorse's search index",
        every=1.0,
    )
    return count


def external_events_of(config: LHConfig, wf_run_id: str) -> ExternalEventList:
    return config.stub().ListExternalEvents(
        ListExternalEventsRequest(wf_run_id=WfRunId(id=wf_run_id))
    )


# -- the lhpipe process --------------------------------------------------------------------------


class LhpipeRun:
    """`lhpipe run` over ``folder`` in a subprocess, its log in ``folder/lhpipe.log``."""

    def __init__(
        self, folder: Path, env: dict[str, str] | None = None, args: Sequence[str] = ()
    ) -> None:
        self.folder = folder
        self.port = free_port()
        self.log_path = folder / f"lhpipe-{self.port}.log"
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            [LHPIPE, "run", str(folder), "--port", str(self.port), *args],
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            cwd=folder,
        )

    def readyz(self) -> tuple[int, dict[str, Any]] | None:
        """``/readyz``'s status and body, or None while nothing answers."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/readyz", timeout=10) as r:
                return int(r.status), json.loads(r.read())
        except urllib.error.HTTPError as exc:
            return int(exc.code), json.loads(exc.read())
        except (urllib.error.URLError, OSError):
            return None

    def wait_ready(self, timeout: float = START_TIMEOUT_SECONDS) -> dict[str, Any]:
        def ready() -> dict[str, Any] | None:
            if self.process.poll() is not None:
                raise AssertionError(f"lhpipe exited with {self.process.returncode}:\n{self.log()}")
            answer = self.readyz()
            return answer[1] if answer is not None and answer[0] == 200 else None

        body: dict[str, Any] = wait_until(ready, timeout, "lhpipe to be ready")
        return body

    def metric(self, name: str, **labels: str) -> float:
        """The value of the sample ``name`` with ``labels`` on ``/metrics`` (0 before any)."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=10) as r:
            text = r.read().decode()
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == name and labels.items() <= sample.labels.items():
                    return float(sample.value)
        return 0.0

    def stats(self, pipeline: str) -> dict[str, Any]:
        # Called in polling loops on a busy machine: one slow answer is asked again.
        answer = wait_until(self.readyz, 60, "/readyz to answer")
        stats: dict[str, Any] = answer[1]["pipelines"][pipeline]["stats"]
        return stats

    def terminate(self, timeout: float = 60.0) -> int:
        """SIGTERM, wait for the drain; returns the exit code."""
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        finally:
            self._log.close()

    def kill(self) -> None:
        self.process.kill()
        self.process.wait(30)
        self._log.close()

    def log(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def __enter__(self) -> LhpipeRun:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.process.poll() is None:
            self.kill()


def write_pipelines(folder: Path, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "pipelines.lhp").write_text(text, encoding="utf-8")
    return folder
