"""Session fixtures for integration tests: the real local stack (docs/stack.md).

If every service already answers its readiness check (`make test` ran `lhpipe stack up`, or a
developer did), the tests use it and leave it running. Otherwise the session starts the stack
itself and stops it at the end.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from lhpipe.stack import control
from lhpipe.stack.addresses import StackAddresses
from lhpipe.stack.pins import DEFAULT_SERVICES
from lhpipe.stack.services import SERVICES


def _all_ready(stack: StackAddresses) -> bool:
    return all(SERVICES[name].is_ready(stack) for name in DEFAULT_SERVICES)


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
