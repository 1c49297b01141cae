"""LittleHorse's execution output topic on the local stack: a completed WfRun leaves
OutputTopicRecords (raw protobuf, written in transactions) for itself and its PUBLIC variables."""

from __future__ import annotations

import time
import uuid

import pytest
from confluent_kafka import Consumer
from engine_run import topic_ends
from lh import lh_config, register_wf_spec, run_wf, unique_name, wait_for_status
from littlehorse.model import LHStatus, OutputTopicRecord
from littlehorse.utils import extract_value
from littlehorse.workflow import Workflow, WorkflowThread
from topic_reading import starts

from lhpipe.stack.addresses import StackAddresses

pytestmark = pytest.mark.integration

READ_TIMEOUT_SECONDS = 60.0


def test_a_completed_wf_run_and_its_public_variable_appear_on_the_output_topic(
    stack: StackAddresses,
) -> None:
    config = lh_config(stack)

    def entrypoint(wf: WorkflowThread) -> None:
        wf.declare_str("applicant").required().as_public()
        wf.declare_str("internal_note").required()

    wf_spec = register_wf_spec(config, Workflow(unique_name("it-output"), entrypoint))
    # The topic keeps what every earlier run on the stack left there: read from where it ends
    # before the WfRun starts.
    start = topic_ends(stack, stack.execution_output_topic)
    assert start, "LittleHorse creates its output topic when it starts"
    consumer = Consumer(
        {
            "bootstrap.servers": stack.kafka_bootstrap,
            "group.id": f"it-output-{uuid.uuid4().hex[:10]}",
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
        }
    )
    consumer.assign(starts(stack.execution_output_topic, start, start))
    try:
        wf_run_id = run_wf(config, wf_spec, applicant="Ada Lovelace", internal_note="private")
        wait_for_status(config, wf_run_id, LHStatus.COMPLETED)

        completed = False
        variables: dict[str, object] = {}
        deadline = time.monotonic() + READ_TIMEOUT_SECONDS
        while not (completed and "applicant" in variables) and time.monotonic() < deadline:
            message = consumer.poll(1.0)
            if message is None or message.error() is not None:
                continue
            record = OutputTopicRecord.FromString(message.value())
            if record.HasField("wf_run") and record.wf_run.id.id == wf_run_id:
                completed = completed or record.wf_run.status == LHStatus.COMPLETED
            if record.HasField("variable") and record.variable.id.wf_run_id.id == wf_run_id:
                variables[record.variable.id.name] = extract_value(record.variable.value)
    finally:
        consumer.close()

    assert completed, "no OutputTopicRecord with the WfRun COMPLETED"
    assert variables.get("applicant") == "Ada Lovelace"
    assert "internal_note" not in variables, "a PRIVATE variable reached the output topic"
