"""Turning on the default tenant's output topic once the LittleHorse server is ready."""

from __future__ import annotations

import logging
import time

from lhpipe.stack.addresses import StackAddresses
from lhpipe.stack.errors import StackError

OUTPUT_TOPIC_TIMEOUT_SECONDS = 60.0


def _topics_exist(stack: StackAddresses, names: set[str]) -> bool:
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": stack.kafka_bootstrap})
    try:
        metadata = admin.list_topics(timeout=5)
    except Exception:
        return False
    return names <= set(metadata.topics)


def enable_output_topic(stack: StackAddresses) -> None:
    """PutTenant with ALL_ENTITY_EVENTS, then wait until both output topics exist in Kafka.

    The server creates `<cluster>_<tenant>_execution` and `..._metadata` when it processes the
    PutTenant; a WfRun started before they exist would leave no records behind.
    """
    import grpc
    from littlehorse.config import LHConfig
    from littlehorse.model import OutputTopicConfig, PutTenantRequest

    # The client warns about its plain-text channel on every stub; on loopback that is intended.
    logging.getLogger("LHConfig").setLevel(logging.ERROR)
    config = LHConfig()
    config.load(
        {"LHC_API_HOST": stack.littlehorse_host, "LHC_API_PORT": str(stack.littlehorse_port)}
    )
    request = PutTenantRequest(
        id=stack.littlehorse_tenant,
        output_topic_config=OutputTopicConfig(
            default_recording_level=OutputTopicConfig.ALL_ENTITY_EVENTS
        ),
    )
    wanted = {stack.execution_output_topic, stack.metadata_output_topic}
    deadline = time.monotonic() + OUTPUT_TOPIC_TIMEOUT_SECONDS
    last_error = ""
    put = False
    while time.monotonic() < deadline:
        if not put:
            try:
                config.stub().PutTenant(request, timeout=10)
                put = True
            except grpc.RpcError as exc:
                # Right after /readiness the metadata processor may still be warming up.
                last_error = f"PutTenant: {exc.code().name} {exc.details()}"
        if put and _topics_exist(stack, wanted):
            return
        time.sleep(1.0)
    raise StackError(
        "LittleHorse did not enable the output topic of tenant "
        f"{stack.littlehorse_tenant!r} within {OUTPUT_TOPIC_TIMEOUT_SECONDS:.0f} s "
        f"({last_error or 'topics ' + ', '.join(sorted(wanted)) + ' never appeared'})"
    )
