"""Kafka for the engine: the client settings, one shared producer, admin. The consumer is
:mod:`lhpipe.connect.consumer`.

**Producer** (:class:`KafkaProducer`). One idempotent producer per process (``acks=all``,
``enable.idempotence=true``) for dead letters and ``to topic``. ``produce`` enqueues without
blocking and returns an awaitable; delivery reports are polled in a background thread and
handed to the loop in batches.

**Admin** (:func:`ensure_topics`). Webhook and dead-letter topics are created when missing, at
start, with the partitions :mod:`lhpipe.connect.topics` gives them (the declaration's
``partitions``, else ``LHPIPE_TOPIC_PARTITIONS``, else 6) and the broker's default replication:
production brokers usually have topic auto-creation off, and a dead letter must never wait on a
topic that does not exist. Existing topics are never altered.

Extra librdkafka properties come from settings named ``LHPIPE_KAFKA_<PROPERTY>``, the property
upper-cased with dots as underscores (``LHPIPE_KAFKA_SECURITY_PROTOCOL=SASL_SSL``), applied to
the consumer, the producer and the admin client alike.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from lhpipe.engine.errors import PermanentError, TransientError
from lhpipe.settings import Settings

log = logging.getLogger(__name__)

EXTRA_PREFIX = "LHPIPE_KAFKA_"
# How long the producer's report thread waits in one poll.
POLL_SECONDS = 0.1
# A produce that Kafka has not acknowledged within this time fails as transient; the Delivery
# policy retries it.
PRODUCE_TIMEOUT_MS = 30_000

TopicPartitionKey = tuple[str, int]


def client_config(settings: Settings) -> dict[str, Any]:
    """The librdkafka properties every client gets: bootstrap servers and the extra ones."""
    config: dict[str, Any] = {"bootstrap.servers": settings.kafka_bootstrap_servers}
    names = {*settings.environ, *settings.file_values}
    for name in sorted(names):
        if name.startswith(EXTRA_PREFIX) and (value := settings.get(name)) is not None:
            config[name[len(EXTRA_PREFIX) :].lower().replace("_", ".")] = value
    return config


# ---------------------------------------------------------------------------------------------
# Producer
# ---------------------------------------------------------------------------------------------

# Delivery failures that say the record will never be accepted as it is.
_PERMANENT_PRODUCE_ERRORS = {
    KafkaError.MSG_SIZE_TOO_LARGE,
    KafkaError.INVALID_RECORD,
    KafkaError.RECORD_LIST_TOO_LARGE,
    KafkaError.TOPIC_AUTHORIZATION_FAILED,
    KafkaError._INVALID_ARG,
    KafkaError.TOPIC_EXCEPTION,
}


def produce_error(
    error: KafkaError | KafkaException, topic: str
) -> TransientError | PermanentError:
    """A librdkafka error on a produce, in the engine's error tree."""
    kafka_error = error.args[0] if isinstance(error, KafkaException) else error
    if not isinstance(kafka_error, KafkaError):
        return TransientError(f"writing to {topic!r} failed: {error}", code="KAFKA")
    code = f"KAFKA_{kafka_error.name().lstrip('_')}"
    message = f"writing to {topic!r} failed: {kafka_error.str()}"
    if kafka_error.code() in _PERMANENT_PRODUCE_ERRORS:
        return PermanentError(message, code=code)
    return TransientError(message, code=code)


class KafkaProducer:
    """The process's one idempotent producer; :meth:`produce` resolves when Kafka has the
    record (``acks=all``) and raises :class:`TransientError` or :class:`PermanentError`."""

    def __init__(self, settings: Settings, *, config: Mapping[str, Any] | None = None) -> None:
        self._config: dict[str, Any] = {
            **client_config(settings),
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 5,
            "message.timeout.ms": PRODUCE_TIMEOUT_MS,
            "client.id": "lhpipe",
            "error_cb": self._on_error,
            "logger": logging.getLogger("lhpipe.kafka.producer"),
            **(config or {}),
        }
        self._producer = Producer(self._config)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._reports: list[tuple[asyncio.Future[None], Exception | None]] = []
        self._reports_lock = threading.Lock()
        self._closing = threading.Event()
        self._poller: threading.Thread | None = None
        self._connected = True

    def _start_poller(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._poller = threading.Thread(
            target=self._poll_reports, name="lhpipe-producer", daemon=True
        )
        self._poller.start()

    async def produce(
        self,
        topic: str,
        value: bytes | None,
        key: bytes | None = None,
        headers: Sequence[tuple[str, bytes | None]] = (),
    ) -> None:
        """Write one record and wait for Kafka's acknowledgement."""
        if self._poller is None:
            self._start_poller()
        loop = self._loop
        assert loop is not None
        future: asyncio.Future[None] = loop.create_future()

        def report(error: KafkaError | None, _message: Any) -> None:
            failure = None if error is None else produce_error(error, topic)
            if failure is None:
                self._connected = True
            with self._reports_lock:
                self._reports.append((future, failure))

        while True:
            try:
                self._producer.produce(
                    topic, value=value, key=key, headers=list(headers), on_delivery=report
                )
                break
            except BufferError:
                # The local queue is full: wait for deliveries to make room.
                await asyncio.sleep(0.01)
            except KafkaException as exc:
                raise produce_error(exc, topic) from exc
        await future

    def _poll_reports(self) -> None:
        while not self._closing.is_set():
            self._producer.poll(POLL_SECONDS)
            self._hand_over_reports()
        self._hand_over_reports()

    def _hand_over_reports(self) -> None:
        with self._reports_lock:
            if not self._reports:
                return
            batch, self._reports = self._reports, []
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(_settle, batch)

    def _on_error(self, error: KafkaError) -> None:
        if error.code() in (KafkaError._ALL_BROKERS_DOWN, KafkaError._TRANSPORT):
            self._connected = False
        log.warning("kafka producer: %s", error.str())

    def connected(self) -> bool:
        """False after librdkafka reported every broker down, until a record is delivered."""
        return self._connected

    async def close(self, timeout: float = 10.0) -> None:
        """Flush what is queued (bounded by ``timeout``) and stop the report thread."""
        await asyncio.to_thread(self._producer.flush, timeout)
        self._closing.set()
        if self._poller is not None:
            await asyncio.to_thread(self._poller.join, timeout)


def _settle(batch: list[tuple[asyncio.Future[None], Exception | None]]) -> None:
    for future, failure in batch:
        if future.done():
            continue
        if failure is None:
            future.set_result(None)
        else:
            future.set_exception(failure)


# ---------------------------------------------------------------------------------------------
# Admin
# ---------------------------------------------------------------------------------------------


def admin_client(settings: Settings) -> AdminClient:
    """An admin client with the settings every Kafka client gets."""
    config: dict[str, Any] = {
        **client_config(settings),
        "logger": logging.getLogger("lhpipe.kafka"),
    }
    return AdminClient(config)


def ensure_compacted_topic(settings: Settings, topic: str, timeout: float = 15.0) -> bool:
    """Create ``topic`` with one partition, ``cleanup.policy=compact`` and the broker's
    replication when it is missing (the poll state, the coordination topic); True when this
    call created it. Raises ``KafkaException`` for a failure other than "already exists"."""
    admin = admin_client(settings)
    if topic in admin.list_topics(timeout=timeout).topics:
        return False
    new = NewTopic(
        topic, num_partitions=1, replication_factor=-1, config={"cleanup.policy": "compact"}
    )
    future = admin.create_topics([new], request_timeout=timeout)[topic]
    try:
        future.result(timeout)
    except KafkaException as exc:
        error = exc.args[0]
        if isinstance(error, KafkaError) and error.code() == KafkaError.TOPIC_ALREADY_EXISTS:
            return False
        raise
    return True


def ensure_topics(
    settings: Settings,
    topics: Iterable[str],
    timeout: float = 15.0,
    *,
    partitions: Mapping[str, int] | None = None,
) -> list[str]:
    """Create the topics that do not exist; returns the ones created. A topic in
    ``partitions`` gets that many partitions (:mod:`lhpipe.connect.topics` decides them for
    webhook and dead-letter topics), any other the broker's default; replication is always the
    broker's default. An existing topic is never altered: one with fewer partitions than
    ``partitions`` asks is logged. Failures other than "already exists" are logged, not
    raised: a broker that forbids creation may still have the topic made by its operators."""
    wanted = sorted(set(topics))
    if not wanted:
        return []
    counts = partitions or {}
    admin = admin_client(settings)
    existing = admin.list_topics(timeout=timeout).topics
    for topic in wanted:
        metadata = existing.get(topic)
        asked = counts.get(topic)
        if metadata is not None and asked is not None and len(metadata.partitions) < asked:
            log.warning(
                "topic %r exists with %d partition(s), fewer than the %d asked for; lhpipe "
                "does not change existing topics",
                topic,
                len(metadata.partitions),
                asked,
            )
    missing = [t for t in wanted if t not in existing]
    if not missing:
        return []
    futures = admin.create_topics(
        [NewTopic(t, num_partitions=counts.get(t, -1), replication_factor=-1) for t in missing],
        request_timeout=timeout,
    )
    created = []
    for topic, future in futures.items():
        try:
            future.result(timeout)
            created.append(topic)
        except KafkaException as exc:
            error = exc.args[0]
            if isinstance(error, KafkaError) and error.code() == KafkaError.TOPIC_ALREADY_EXISTS:
                continue
            log.warning("could not create topic %r: %s", topic, exc)
    return created
