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
from lhpipe.stack.addresses import KAFKA_SECURE_PORT, StackAddresses
from lhpipe.stack.certs import StackCerts, certs_in
from lhpipe.stack.pins import DEFAULT_SERVICES
from lhpipe.stack.services import SERVICES, port_open


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
def secure_stack(stack: StackAddresses) -> Iterator[StackCerts]:
    """The stack with its secured listeners (``lhpipe stack up --secure``, docs/security.md);
    its certificates. `make test` starts it so; a developer's open stack is restarted secured
    (and the secure one left running)."""
    from lhpipe.stack.paths import run_dir

    if not (control.is_secure() and port_open(KAFKA_SECURE_PORT)):
        # Restarted secured: what ran before (Kafka Connect too) runs again.
        extra = ("connect",) if _all_ready(stack, ("connect",)) else ()
        control.up((*DEFAULT_SERVICES, *extra), secure=True)
    yield certs_in(run_dir())


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
