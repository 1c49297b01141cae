"""Reading back what a test wrote to a Kafka topic, and nothing from before the test.

The integration tests share a stack that may live long: LittleHorse's output topic, Kafka
Connect's config topic and lhpipe's poll state topic keep what every earlier run left there,
hundreds of thousands of records on a stack that ran the benchmarks. A reader that starts at
the beginning of such a topic spends its timeout on other runs' records. So a test that reads a
topic it did not create takes the end of every partition before it acts (:func:`ends`) and
reads from there (``since``); a topic the test created itself is read from its beginning
(``since=None``).

The readers assign their partitions (no group to join, no offsets committed) and know they
are at the end of a partition from the consumer's end-of-partition event, which comes at the
last stable offset: that is right for a transactional topic too, where a commit marker takes
the offset after the last record and is never delivered.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

#: Per partition, the offset a reader starts at.
Offsets = Mapping[int, int]


def reader_config(bootstrap: str, group: str) -> dict[str, Any]:
    """The config of a consumer for :func:`read`: ``group`` is only a name (it never joins
    and never commits)."""
    return {
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "enable.auto.commit": False,
        "enable.partition.eof": True,
    }


def partitions_of(consumer: Consumer, topic: str) -> list[int] | None:
    """The partitions of ``topic``, ``None`` when it does not exist. Lists every topic rather
    than asking for this one, which a broker that creates topics on demand would create."""
    found = consumer.list_topics(timeout=10).topics.get(topic)
    return None if found is None else sorted(found.partitions)


def ends(consumer: Consumer, topic: str) -> dict[int, int]:
    """Per partition of ``topic``, the offset the next record written to it will take (its
    high watermark): what a test takes before it acts, to read only what comes after. Empty
    when the topic does not exist yet (all it will ever hold comes after)."""
    partitions = partitions_of(consumer, topic) or []
    return {
        p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10, cached=False)[1]
        for p in partitions
    }


def starts(topic: str, partitions: Iterable[int], since: Offsets | None) -> list[TopicPartition]:
    """Where a reader starts in each partition: at ``since``'s offset, or at the beginning of
    a partition ``since`` does not name (the topic did not exist then, or has grown since)."""
    offsets = since or {}
    return [TopicPartition(topic, p, offsets.get(p, OFFSET_BEGINNING)) for p in partitions]


def read(
    consumer: Consumer, topic: str, expected: int, timeout: float, since: Offsets | None = None
) -> list[Any]:
    """The messages of ``topic`` from ``since`` (see :func:`starts`) until at least
    ``expected`` arrived and ``consumer`` (configured as :func:`reader_config` says) is at the
    end of every partition; none for a topic that does not exist. Fails after ``timeout``
    seconds."""
    messages: list[Any] = []
    partitions = partitions_of(consumer, topic)
    if partitions is None:
        return messages
    consumer.assign(starts(topic, partitions, since))
    at_end: set[int] = set()
    deadline = time.monotonic() + timeout
    # Done once every partition said it is at its end after the last record it gave: before
    # that, "no record yet" (expected=0) would say nothing.
    while len(messages) < expected or len(at_end) < len(partitions):
        if time.monotonic() > deadline:
            raise AssertionError(
                f"timed out after {timeout:.0f} s reading {topic} to its end: "
                f"{len(messages)} of at least {expected} records"
            )
        for message in consumer.consume(num_messages=500, timeout=0.5):
            error = message.error()
            if error is None:
                at_end.discard(message.partition())
                messages.append(message)
            elif error.code() == KafkaError._PARTITION_EOF:
                at_end.add(message.partition())
    return messages
