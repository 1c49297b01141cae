"""The LittleHorse sender against the real server: what each plan creates, read back from
LittleHorse. Variables of every type and their coercion, a StructDef, ids from the plan, child
and grandchild WfRuns, a pre-emptive external event, first-write-wins correlation,
ALREADY_EXISTS on replay, and the error classes of what LittleHorse refuses."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest
from lh import (
    correlated_event,
    external_event,
    lh_config,
    register_external_event_def,
    register_struct_def,
    register_wf_spec,
    unique_name,
    variable_value,
    wait_for_external_event_node,
    wait_for_status,
)
from littlehorse.config import LHConfig
from littlehorse.model import (
    LHStatus,
    StructFieldDef,
    TypeDefinition,
    VariableType,
    WfRunId,
    WfSpec,
)
from littlehorse.workflow import Workflow, WorkflowThread

from lhpipe.clients.lh_values import ConversionError, UndeclaredVariableError
from lhpipe.clients.littlehorse import (
    LittleHorseClient,
    LittleHorsePausedError,
    LittleHorsePermanentError,
)
from lhpipe.core.plans import CorrelatePlan, PostEventPlan, RunWfPlan
from lhpipe.settings import Settings
from lhpipe.stack.addresses import StackAddresses

pytestmark = pytest.mark.integration

EVERY_TYPE = {
    "s": "declare_str",
    "i": "declare_int",
    "d": "declare_double",
    "b": "declare_bool",
    "by": "declare_bytes",
    "ts": "declare_timestamp",
    "o": "declare_json_obj",
    "a": "declare_json_arr",
}


def client_for(stack: StackAddresses) -> LittleHorseClient:
    return LittleHorseClient.from_settings(
        Settings(
            environ={
                "LHC_API_HOST": stack.littlehorse_host,
                "LHC_API_PORT": str(stack.littlehorse_port),
            }
        )
    )


def send(stack: StackAddresses, *plans: Any) -> None:
    """Send the plans one after the other with a fresh client (one process's worth)."""

    async def go() -> None:
        client = client_for(stack)
        try:
            for plan in plans:
                await client.send(plan)
        finally:
            await client.close()

    asyncio.run(go())


def every_type_wf_spec(config: LHConfig) -> WfSpec:
    def entrypoint(wf: WorkflowThread) -> None:
        for name, declare in EVERY_TYPE.items():
            getattr(wf, declare)(name)
        wf.declare_str("unset")

    return register_wf_spec(config, Workflow(unique_name("it-every-type"), entrypoint))


def waiting_wf_spec(config: LHConfig, event: str, *, parent: str | None = None) -> WfSpec:
    """A WfSpec that waits for `event` and stores its content in `got`."""

    def entrypoint(wf: WorkflowThread) -> None:
        got = wf.declare_str("got") if parent is None else wf.declare_int("got")
        got.assign(wf.wait_for_event(event))

    return register_wf_spec(config, Workflow(unique_name("it-waits"), entrypoint, parent_wf=parent))


def values_of(config: LHConfig, wf_run_id: str, names: list[str]) -> dict[str, Any]:
    return {name: variable_value(config, wf_run_id, name) for name in names}


# ---------------------------------------------------------------------------------------------
# run_wf
# ---------------------------------------------------------------------------------------------


def test_run_wf_creates_the_wf_run_with_the_plan_id_and_variables_of_every_type(
    stack: StackAddresses,
) -> None:
    config = lh_config(stack)
    spec = every_type_wf_spec(config)
    wf_run_id = unique_name("run")
    at = datetime(2024, 5, 1, 10, 30, tzinfo=UTC)

    send(
        stack,
        RunWfPlan(
            spec.id.name,
            wf_run_id,
            {
                "s": "Ann",
                "i": 42,
                "d": 1.5,
                "b": True,
                "by": b"\x00\xff",
                "ts": at,
                "o": {"tags": ["a"], "n": None},
                "a": [1, "two"],
                "unset": None,
            },
        ),
    )

    wait_for_status(config, wf_run_id, LHStatus.COMPLETED)
    assert values_of(config, wf_run_id, [*EVERY_TYPE, "unset"]) == {
        "s": "Ann",
        "i": 42,
        "d": 1.5,
        "b": True,
        "by": b"\x00\xff",
        "ts": at.replace(tzinfo=None),
        "o": {"tags": ["a"], "n": None},
        "a": [1, "two"],
        "unset": None,
    }


def test_values_are_coerced_to_the_types_the_wf_spec_declares(stack: StackAddresses) -> None:
    config = lh_config(stack)
    spec = every_type_wf_spec(config)
    wf_run_id = unique_name("coerce")

    send(
        stack,
        RunWfPlan(
            spec.id.name,
            wf_run_id,
            {
                "d": 3,  # int into DOUBLE
                "ts": "2024-05-01T12:00:00+02:00",  # ISO-8601 into TIMESTAMP
                "i": "17",  # digits into INT
                "s": 99,  # a number into STR
                "o": '{"k": 1}',  # JSON text into JSON_OBJ
            },
        ),
    )

    wait_for_status(config, wf_run_id, LHStatus.COMPLETED)
    assert values_of(config, wf_run_id, ["d", "ts", "i", "s", "o"]) == {
        "d": 3.0,
        "ts": datetime(2024, 5, 1, 10, 0),
        "i": 17,
        "s": "99",
        "o": {"k": 1},
    }
    assert isinstance(variable_value(config, wf_run_id, "d"), float)


def test_a_replayed_run_wf_is_success_and_creates_nothing_new(stack: StackAddresses) -> None:
    config = lh_config(stack)
    spec = every_type_wf_spec(config)
    wf_run_id = unique_name("replay")

    send(stack, RunWfPlan(spec.id.name, wf_run_id, {"s": "first"}))
    first = wait_for_status(config, wf_run_id, LHStatus.COMPLETED)
    send(stack, RunWfPlan(spec.id.name, wf_run_id, {"s": "second"}))

    again = config.stub().GetWfRun(WfRunId(id=wf_run_id))
    assert again.start_time == first.start_time
    assert variable_value(config, wf_run_id, "s") == "first"


def test_a_struct_variable_is_written_as_its_struct_def(stack: StackAddresses) -> None:
    config = lh_config(stack)
    struct_name = unique_name("it-address")
    register_struct_def(
        config,
        struct_name,
        {
            "city": StructFieldDef(field_type=TypeDefinition(primitive_type=VariableType.STR)),
            "zip": StructFieldDef(
                field_type=TypeDefinition(primitive_type=VariableType.INT), is_nullable=True
            ),
        },
    )

    def entrypoint(wf: WorkflowThread) -> None:
        wf.declare_struct("home", struct_name)

    spec = register_wf_spec(config, Workflow(unique_name("it-struct"), entrypoint))
    wf_run_id = unique_name("struct")

    send(stack, RunWfPlan(spec.id.name, wf_run_id, {"home": {"city": "Lyon", "zip": "69001"}}))

    wait_for_status(config, wf_run_id, LHStatus.COMPLETED)
    assert variable_value(config, wf_run_id, "home") == {"city": "Lyon", "zip": 69001}


# ---------------------------------------------------------------------------------------------
# child WfRuns and post_event
# ---------------------------------------------------------------------------------------------


def test_children_are_started_by_parent_ids_and_reached_by_a_b_and_a_b_c_ids(
    stack: StackAddresses,
) -> None:
    config = lh_config(stack)
    event = unique_name("it-child-ev")
    register_external_event_def(config, event, payload_type=VariableType.INT)
    parent_spec = waiting_wf_spec(config, event)
    child_spec = waiting_wf_spec(config, event, parent=parent_spec.id.name)
    grandchild_spec = waiting_wf_spec(config, event, parent=child_spec.id.name)
    parent_id, child_id, grandchild_id = (unique_name(n) for n in ("parent", "child", "grand"))

    send(
        stack,
        RunWfPlan(parent_spec.id.name, parent_id, {}),
        RunWfPlan(child_spec.id.name, child_id, {}, parent_wf_run_id=parent_id),
        RunWfPlan(
            grandchild_spec.id.name, grandchild_id, {}, parent_wf_run_id=f"{parent_id}_{child_id}"
        ),
    )
    child_run_id = WfRunId(id=child_id, parent_wf_run_id=WfRunId(id=parent_id))
    grandchild_run_id = WfRunId(id=grandchild_id, parent_wf_run_id=child_run_id)
    assert config.stub().GetWfRun(child_run_id).wf_spec_id.name == child_spec.id.name
    grandchild = config.stub().GetWfRun(grandchild_run_id)
    assert grandchild.wf_spec_id.name == grandchild_spec.id.name

    send(
        stack,
        PostEventPlan(event, f"{parent_id}_{child_id}_{grandchild_id}", "guid-1", "9"),
        PostEventPlan(event, f"{parent_id}_{child_id}", "guid-2", "7"),
    )

    assert external_event(config, grandchild_run_id, event, "guid-1") == 9
    assert external_event(config, child_run_id, event, "guid-2") == 7
    parent = config.stub().GetWfRun(WfRunId(id=parent_id))
    assert parent.status == LHStatus.RUNNING  # the events went to the descendants only


def test_a_pre_emptive_external_event_is_consumed_when_the_wf_run_reaches_the_node(
    stack: StackAddresses,
) -> None:
    config = lh_config(stack)
    event = unique_name("it-early")
    register_external_event_def(config, event)
    spec = waiting_wf_spec(config, event)
    wf_run_id = unique_name("early")

    # The event is posted before the WfRun exists, then the run starts.
    send(
        stack,
        PostEventPlan(event, wf_run_id, "early-guid", "approved"),
        RunWfPlan(spec.id.name, wf_run_id, {}),
    )

    wait_for_status(config, wf_run_id, LHStatus.COMPLETED)
    assert variable_value(config, wf_run_id, "got") == "approved"


def test_a_replayed_event_guid_is_success_and_the_first_content_stays(
    stack: StackAddresses,
) -> None:
    config = lh_config(stack)
    event = unique_name("it-guid")
    register_external_event_def(config, event)
    spec = waiting_wf_spec(config, event)
    wf_run_id = unique_name("guid")
    send(stack, RunWfPlan(spec.id.name, wf_run_id, {}))
    wait_for_external_event_node(config, wf_run_id)

    send(
        stack,
        PostEventPlan(event, wf_run_id, "same-guid", "first"),
        PostEventPlan(event, wf_run_id, "same-guid", "second"),
    )

    wait_for_status(config, wf_run_id, LHStatus.COMPLETED)
    assert variable_value(config, wf_run_id, "got") == "first"
    assert external_event(config, WfRunId(id=wf_run_id), event, "same-guid") == "first"


# ---------------------------------------------------------------------------------------------
# correlate
# ---------------------------------------------------------------------------------------------


def test_correlation_is_first_write_wins(stack: StackAddresses) -> None:
    config = lh_config(stack)
    event = unique_name("it-paid")
    register_external_event_def(config, event, correlated=True)

    def entrypoint(wf: WorkflowThread) -> None:
        order = wf.declare_str("order").required()
        receipt = wf.declare_str("receipt")
        receipt.assign(wf.wait_for_event(event, correlation_id=order))

    spec = register_wf_spec(config, Workflow(unique_name("it-await-paid"), entrypoint))
    key = unique_name("order")

    send(
        stack,
        CorrelatePlan(event, key, "paid 10 EUR"),
        CorrelatePlan(event, key, "paid 99 EUR"),
    )
    assert correlated_event(config, key, event) == "paid 10 EUR"

    wf_run_id = unique_name("await-paid")
    send(stack, RunWfPlan(spec.id.name, wf_run_id, {"order": key}))
    wait_for_status(config, wf_run_id, LHStatus.COMPLETED)
    assert variable_value(config, wf_run_id, "receipt") == "paid 10 EUR"


# ---------------------------------------------------------------------------------------------
# errors
# ---------------------------------------------------------------------------------------------


def failure_of(stack: StackAddresses, plan: Any) -> BaseException:
    with pytest.raises(Exception) as caught:
        send(stack, plan)
    return caught.value


def test_an_unknown_wf_spec_is_permanent_not_found(stack: StackAddresses) -> None:
    error = failure_of(stack, RunWfPlan(unique_name("it-no-such-spec"), "x-1", {}))
    assert isinstance(error, LittleHorsePermanentError)
    assert error.code == "NOT_FOUND"


def test_an_unknown_external_event_def_is_permanent_not_found(stack: StackAddresses) -> None:
    error = failure_of(stack, CorrelatePlan(unique_name("it-no-such-event"), "k", 1))
    assert isinstance(error, LittleHorsePermanentError)
    assert error.code == "NOT_FOUND"


def test_an_undeclared_variable_is_permanent_and_starts_nothing(stack: StackAddresses) -> None:
    config = lh_config(stack)
    spec = every_type_wf_spec(config)
    wf_run_id = unique_name("undeclared")

    error = failure_of(stack, RunWfPlan(spec.id.name, wf_run_id, {"nickname": "Ann"}))

    assert isinstance(error, UndeclaredVariableError)
    assert error.code == "UNDECLARED_VARIABLE"
    assert "nickname" in error.message
    with pytest.raises(Exception, match="NOT_FOUND"):
        config.stub().GetWfRun(WfRunId(id=wf_run_id))


def test_a_value_that_cannot_be_converted_is_permanent(stack: StackAddresses) -> None:
    config = lh_config(stack)
    spec = every_type_wf_spec(config)
    error = failure_of(stack, RunWfPlan(spec.id.name, unique_name("bad"), {"i": "forty"}))
    assert isinstance(error, ConversionError)
    assert error.message == "variable i: cannot convert str 'forty' to INT"


def test_a_child_of_a_missing_parent_pauses(stack: StackAddresses) -> None:
    config = lh_config(stack)
    event = unique_name("it-orphan-ev")
    register_external_event_def(config, event, payload_type=VariableType.INT)
    parent_spec = waiting_wf_spec(config, event)
    child_spec = waiting_wf_spec(config, event, parent=parent_spec.id.name)

    error = failure_of(
        stack,
        RunWfPlan(child_spec.id.name, "orphan", {}, parent_wf_run_id=unique_name("gone")),
    )

    assert isinstance(error, LittleHorsePausedError)
    assert error.code == "FAILED_PRECONDITION"


def test_ping_answers_against_the_live_server(stack: StackAddresses) -> None:
    async def go() -> tuple[bool, bool]:
        client = client_for(stack)
        try:
            return await client.ping(), client.connected()
        finally:
            await client.close()

    assert asyncio.run(go()) == (True, True)
