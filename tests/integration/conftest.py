"""Session fixtures for integration tests: the real local stack (docs/stack.md).

If every service already answers its readiness check (`make test` ran `lhpipe stack up --with
connect`, or a developer did), the tests use it and leave it running. Otherwise the session
starts what is missing itself and stops it at the end: `stack` the default services, `connect`
also Kafka Connect (for `connector` sources).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from lhpipe.stack import control
from lhpipe.stack.addresses import StackAddresses
from lhpipe.stack.pins import DEFAULT_SERVICES
from lhpipe.stack.services import SERVICES


def _all_ready(stack: StackAddresses, names: tuple[str, ...] = DEFAULT_SERVICES) -> bool:
    return all(SERVICES[name].is_ready(stack) for name in names)


@pytest.fixture(scope="session")
def stack() -> Iterator[StackAddresses]:
    """The addresses of a running stack: Kafka, LittleHorse, Apicurio and Keycloak."""
    addresses = StackAddresses()
    if _all_ready(addresses):
        yield addresses
        return
    started = control.up(DEFAULT_SERVICES)
    try:
        yield started
    finally:
        control.down()


@pytest.fixture(scope="session")
def connect(stack: StackAddresses) -> Iterator[StackAddresses]:
    """The stack with Kafka Connect (REST on ``stack.connect_url``); started for the session
    (and stopped after it) only when it does not answer already."""
    if _all_ready(stack, ("connect",)):
        yield stack
        return
    started = control.up((*DEFAULT_SERVICES, "connect"))
    try:
        yield started
    finally:
        control.stop_service("connect")
