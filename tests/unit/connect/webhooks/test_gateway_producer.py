"""The Gateway's producer against a broker that is not there: every record it accepts is
reported within its timeout, also the ones that first had to wait for room in the local queue
(the network is never reached: the bootstrap address refuses connections)."""

from __future__ import annotations

import asyncio

import pytest

from lhpipe.core.errors import TransientError
from lhpipe.gateway.producer import GatewayProducer
from lhpipe.settings import Settings


def nowhere(queue_size: int) -> Settings:
    return Settings(
        environ={
            "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1",
            "LHPIPE_KAFKA_QUEUE_BUFFERING_MAX_MESSAGES": str(queue_size),
        }
    )


def test_a_record_kafka_never_acknowledges_fails_as_transient_after_the_timeout() -> None:
    async def scenario() -> TransientError:
        producer = GatewayProducer(nowhere(10), timeout_ms=300)
        # librdkafka's own default would be 300 s: a deadline well short of it (and loose enough
        # for a busy machine) fails the test if the 300 ms timeout did not apply
        with pytest.raises(TransientError) as raised:
            await asyncio.wait_for(
                producer.produce("intake", b"v", b"k", [("lhpipe.webhook", b"w")]), 60
            )
        await producer.close(timeout=1)
        return raised.value

    error = asyncio.run(scenario())

    # the message timed out: it is not some other failure that happened to come first
    assert "timed out" in str(error).lower(), error


def test_records_beyond_a_full_local_queue_wait_for_room_and_are_reported_too() -> None:
    async def scenario() -> list[BaseException | None]:
        producer = GatewayProducer(nowhere(1), timeout_ms=300)
        waits = [producer.produce("intake", f"v{n}".encode()) for n in range(3)]
        results = await asyncio.wait_for(asyncio.gather(*waits, return_exceptions=True), 15)
        await producer.close(timeout=1)
        return list(results)

    results = asyncio.run(scenario())

    assert len(results) == 3
    assert all(isinstance(result, TransientError) for result in results), results
