"""Unit tests never touch the local stack's Kafka Connect: an `lhpipe run` they start would
otherwise sweep (and log) the connectors its owner marker names, on the worker that the
integration tests and `lhpipe demo` use."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.fixture(autouse=True)
def _no_kafka_connect(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("LHPIPE_CONNECT_URL", f"http://127.0.0.1:{_closed_port()}")
    yield
