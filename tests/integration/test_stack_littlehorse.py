"""LittleHorse on the local stack: WfSpecs registered from Python run to completion, driven by a
Python task worker, an ExternalEvent, or a CorrelatedEvent."""

from __future__ import annotations

import pytest
from lh import (
    lh_config,
    post_correlated_event,
    post_external_event,
    register_external_event_def,
    register_task_def,
    register_wf_spec,
    run_wf,
    task_worker,
    unique_name,
    variable_value,
    wait_for_external_event_node,
    wait_for_status,
)
from littlehorse.model import LHStatus
from littlehorse.workflow import Workflow, WorkflowThread

from lhpipe.stack.addresses import StackAddresses

pytestmark = pytest.mark.integration


async def greet(name: str) -> str:
    return f"hello, {name}"


def test_a_wf_run_completes_with_the_output_of_a_python_task_worker(
    stack: StackAddresses,
) -> None:
    config = lh_config(stack)
    task = unique_name("it-greet")
    register_task_def(config, task, greet)

    def entrypoint(wf: WorkflowThread) -> None:
        name = wf.declare_str("name").required()
        greeting = wf.declare_str("greeting")
        greeting.assign(wf.execute(task, name))

    wf_spec = register_wf_spec(config, Workflow(unique_name("it-greeting"), entrypoint))
    with task_worker(config, task, greet):
        wf_run_id = run_wf(config, wf_spec, name="Ada")
        wait_for_status(config, wf_run_id, LHStatus.COMPLETED)

    assert variable_value(config, wf_run_id, "greeting") == "hello, Ada"


def test_an_external_event_completes_the_wf_run_waiting_for_it(stack: StackAddresses) -> None:
    config = lh_config(stack)
    event = unique_name("it-approved")
    event_def = register_external_event_def(config, event)
    assert not event_def.HasField("correlated_event_config")

    def entrypoint(wf: WorkflowThread) -> None:
        decision = wf.declare_str("decision")
        decision.assign(wf.wait_for_event(event))

    wf_spec = register_wf_spec(config, Workflow(unique_name("it-await-event"), entrypoint))
    wf_run_id = run_wf(config, wf_spec)
    wait_for_external_event_node(config, wf_run_id)

    post_external_event(config, wf_run_id, event, "approved by Grace")

    wait_for_status(config, wf_run_id, LHStatus.COMPLETED)
    assert variable_value(config, wf_run_id, "decision") == "approved by Grace"


def test_a_correlated_event_completes_the_wf_run_waiting_on_its_key(
    stack: StackAddresses,
) -> None:
    config = lh_config(stack)
    event = unique_name("it-payment")
    event_def = register_external_event_def(config, event, correlated=True)
    assert event_def.HasField("correlated_event_config")

    def entrypoint(wf: WorkflowThread) -> None:
        order_id = wf.declare_str("order_id").required()
        receipt = wf.declare_str("receipt")
        receipt.assign(wf.wait_for_event(event, correlation_id=order_id))

    wf_spec = register_wf_spec(config, Workflow(unique_name("it-await-payment"), entrypoint))
    order_id = unique_name("order")
    wf_run_id = run_wf(config, wf_spec, order_id=order_id)
    wait_for_external_event_node(config, wf_run_id)

    post_correlated_event(config, order_id, event, "paid 12.50 EUR")

    wait_for_status(config, wf_run_id, LHStatus.COMPLETED)
    assert variable_value(config, wf_run_id, "receipt") == "paid 12.50 EUR"
