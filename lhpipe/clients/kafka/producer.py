"""The producer: one idempotent producer per process (``acks=all``,
``enable.idempotence=true``) for dead letters and ``to topic``. ``produce`` enqueues without
blocking and returns an awaitable; delivery reports are polled in a background thread and
handed to the loop in batches.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Mapping, Sequence
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Producer

from lhpipe.clients.kafka.config import client_config
from lhpipe.core.errors import PermanentError, TransientError
from lhpipe.settings import Settings

log = logging.getLogger(__name__)

# How long the producer's report thread waits in one poll.
POLL_SECONDS = 0.1
# A produce that Kafka has not acknowledged within this time fails as transient; the Delivery
# policy retries it.
PRODUCE_TIMEOUT_MS = 30_000

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
