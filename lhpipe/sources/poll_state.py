"""Where a poll pipeline's position lives: one compacted Kafka topic, keyed by pipeline name.

The topic is ``lhpipe_poll_state`` unless the setting ``LHPIPE_POLL_STATE_TOPIC`` names
another. It is created when missing (one partition, ``cleanup.policy=compact``, the broker's
replication), so Kafka keeps the newest state of each pipeline for ever. A state is JSON:

``{"pipeline", "url", "cursor", "etag", "etag_url", "seen", "updated"}``

``cursor`` is the cursor to ask with next (any JSON value, ``null`` before the first answer),
``etag`` the ``ETag`` of the last answer from ``etag_url`` (sent back as ``If-None-Match``
when the same URL is asked again), ``seen`` the most recent item ids, oldest first (the dedupe
window), ``url`` the source's URL as written and ``updated`` when it was written (both for
people reading the topic; ``updated`` written as every timestamp, :mod:`lhpipe.core.timestamps`).

States are written with the process's idempotent producer (``acks=all``) and read back at
every start by reading the topic from its beginning to its end (a compacted topic holding one
record per poll pipeline is small).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import orjson
from confluent_kafka import Consumer, KafkaException, TopicPartition

from lhpipe.clients.kafka.admin import ensure_compacted_topic
from lhpipe.clients.kafka.config import client_config
from lhpipe.core.errors import TransientError
from lhpipe.core.senders import RecordProducer
from lhpipe.core.timestamps import timestamp_text
from lhpipe.settings import Settings

log = logging.getLogger(__name__)

READ_TIMEOUT_SECONDS = 30.0


@dataclass(frozen=True, slots=True)
class PollState:
    """A poll pipeline's durable position (see the module docstring)."""

    cursor: Any = None
    etag: str | None = None
    etag_url: str | None = None
    seen: tuple[str, ...] = ()

    def to_bytes(self, pipeline: str, url: str) -> bytes:
        return orjson.dumps(
            {
                "pipeline": pipeline,
                "url": url,
                "cursor": self.cursor,
                "etag": self.etag,
                "etag_url": self.etag_url,
                "seen": list(self.seen),
                "updated": timestamp_text(datetime.now(UTC)),
            }
        )

    @classmethod
    def from_bytes(cls, raw: bytes) -> PollState:
        """A state as written by :meth:`to_bytes`; fields that are missing or of the wrong
        kind read as their defaults."""
        data = orjson.loads(raw)
        if not isinstance(data, dict):
            raise ValueError("a poll state must be a JSON object")
        etag, etag_url, seen = data.get("etag"), data.get("etag_url"), data.get("seen")
        return cls(
            cursor=data.get("cursor"),
            etag=etag if isinstance(etag, str) else None,
            etag_url=etag_url if isinstance(etag_url, str) else None,
            seen=tuple(s for s in seen if isinstance(s, str)) if isinstance(seen, list) else (),
        )


class PollStateStore(Protocol):
    """Reads and writes poll states (Kafka in production, a dict in unit tests)."""

    async def load(self, pipeline: str) -> PollState | None:
        """The newest state of ``pipeline``, ``None`` when it never wrote one."""
        ...

    async def save(self, pipeline: str, url: str, state: PollState) -> None:
        """Write ``state`` durably; raises on failure (the caller retries)."""
        ...


class KafkaPollStateStore:
    """:class:`PollStateStore` on a compacted topic (see the module docstring).

    ``consumer`` (makes the reader from its configuration), ``ensure_topic`` (creates the topic
    when missing, True when it did) and ``clock`` (monotonic seconds) are Kafka's and the
    system's unless a test passes its own.
    """

    def __init__(
        self,
        settings: Settings,
        producer: RecordProducer,
        topic: str,
        *,
        consumer: Callable[[dict[str, Any]], Consumer] = Consumer,
        ensure_topic: Callable[[Settings, str], bool] = ensure_compacted_topic,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.topic = topic
        self._producer = producer
        self._new_consumer = consumer
        self._ensure_compacted = ensure_topic
        self._clock = clock
        self._topic_ready = False

    async def load(self, pipeline: str) -> PollState | None:
        raw = await asyncio.to_thread(self._read, pipeline.encode("utf-8"))
        return None if raw is None else PollState.from_bytes(raw)

    async def save(self, pipeline: str, url: str, state: PollState) -> None:
        await self._producer.produce(
            self.topic, state.to_bytes(pipeline, url), key=pipeline.encode("utf-8")
        )

    # -- in a worker thread ----------------------------------------------------------------

    def _ensure_topic(self) -> None:
        if self._topic_ready:
            return
        try:
            if self._ensure_compacted(self.settings, self.topic):
                log.info("created the poll state topic %r", self.topic)
        except KafkaException as exc:
            raise TransientError(
                f"could not create the poll state topic {self.topic!r}: {exc}", code="KAFKA"
            ) from exc
        self._topic_ready = True

    def _read(self, key: bytes) -> bytes | None:
        """The value of the newest record with ``key``, reading every partition to its end."""
        self._ensure_topic()
        consumer = self._new_consumer(
            {
                **client_config(self.settings),
                "group.id": "lhpipe-poll-state-reader",  # never joined: partitions are assigned
                "enable.auto.commit": False,
                "enable.partition.eof": False,
                "logger": logging.getLogger("lhpipe.kafka.consumer"),
            }
        )
        try:
            return self._read_with(consumer, key)
        finally:
            consumer.close()

    def _read_with(self, consumer: Consumer, key: bytes) -> bytes | None:
        topic = self.topic
        metadata = consumer.list_topics(topic, timeout=10).topics.get(topic)
        if metadata is None or metadata.error is not None:
            raise TransientError(f"the poll state topic {topic!r} cannot be read", code="KAFKA")
        ends: dict[int, int] = {}
        starts = []
        for partition in metadata.partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
            if high > low:
                ends[partition] = high
                starts.append(TopicPartition(topic, partition, low))
        if not ends:
            return None
        consumer.assign(starts)
        found: bytes | None = None
        deadline = self._clock() + READ_TIMEOUT_SECONDS
        while ends:
            if self._clock() > deadline:
                raise TransientError(
                    f"reading the poll state topic {topic!r} took over "
                    f"{READ_TIMEOUT_SECONDS:.0f} s",
                    code="KAFKA",
                )
            message = consumer.poll(0.5)
            if message is None:
                continue
            error = message.error()
            if error is not None:
                raise TransientError(
                    f"reading the poll state topic {topic!r}: {error.str()}", code="KAFKA"
                )
            if message.key() == key:
                found = message.value()  # a tombstone (None) forgets the state
            partition, offset = message.partition(), message.offset()
            if partition in ends and offset is not None and offset >= ends[partition] - 1:
                del ends[partition]
        return found
