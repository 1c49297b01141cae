"""What a source feeds: the pipeline runner, seen from a source.

Every source (a Kafka consumer, the output-topic reader, the poller) hands its records to a
:class:`RecordSink` on the event loop; a Kafka source also asks it for the offsets of revoked
partitions (:class:`KafkaRecordSink`). A partition is a :data:`TopicPartition`, ``(topic,
partition)``, everywhere; a revocation waits at most :data:`REVOKE_WAIT_SECONDS` for the
records in flight on the partitions it takes away.
"""

from __future__ import annotations

from typing import Protocol

from lhpipe.core.record import Record

#: A topic's partition: ``(topic, partition)``.
TopicPartition = tuple[str, int]

#: How long a revocation waits for the records in flight on the partitions it takes away
#: before their offsets are committed as they are.
REVOKE_WAIT_SECONDS = 10.0


class RecordSink(Protocol):
    """What a source feeds: the pipeline runner, on the event loop."""

    def room(self) -> int:
        """How many more records the runner takes now (read from the source's thread)."""
        ...

    def on_assigned(self, partitions: list[TopicPartition]) -> None:
        """Partitions were assigned (called on the loop, before any of their records)."""
        ...

    def on_records(self, records: list[Record]) -> None:
        """A batch of records in read order (called on the loop)."""
        ...

    def on_committed(self, offsets: dict[TopicPartition, int]) -> None:
        """The offsets were committed (called on the loop)."""
        ...


class KafkaRecordSink(RecordSink, Protocol):
    """The sink of a Kafka consumer, which also gives back partitions and wakes the consumer's
    thread when it has room."""

    def wait_for_room(self, wanted: int, timeout: float) -> None:
        """From the consumer's thread: return once :meth:`room` reaches ``wanted``, or after
        ``timeout`` seconds (the runner wakes the thread as soon as records finish)."""
        ...

    async def on_revoked(self, partitions: list[TopicPartition]) -> dict[TopicPartition, int]:
        """Partitions are being taken away: drop their waiting records, wait (bounded by
        :data:`REVOKE_WAIT_SECONDS`) for their running ones, return the offsets to commit
        for them."""
        ...
