"""Helpers for integration tests that talk to the local LittleHorse server.

Register TaskDefs, WfSpecs and ExternalEventDefs (plain or correlated) from Python, wait until
the server shows them (new metadata takes a moment to reach the read side), run a Python task
worker in a background thread, start WfRuns and wait for their outcome.

Every test names its metadata with `unique_name`, so tests never collide on a stack that is
reused between runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import grpc
from littlehorse.config import LHConfig
from littlehorse.model import (
    CorrelatedEventConfig,
    CorrelatedEventId,
    ExternalEventDef,
    ExternalEventDefId,
    ExternalEventId,
    GetLatestWfSpecRequest,
    InlineStructDef,
    LHStatus,
    NodeRunId,
    PutCorrelatedEventRequest,
    PutExternalEventDefRequest,
    PutExternalEventRequest,
    PutStructDefRequest,
    ReturnType,
    RunWfRequest,
    StructDef,
    StructDefId,
    StructFieldDef,
    TaskDef,
    TaskDefId,
    TypeDefinition,
    VariableId,
    VariableType,
    WfRun,
    WfRunId,
    WfSpec,
)
from littlehorse.utils import extract_value, to_variable_value
from littlehorse.worker import LHTask, LHTaskWorker
from littlehorse.workflow import Workflow, create_workflow_spec

from lhpipe.stack.addresses import StackAddresses

VISIBLE_TIMEOUT_SECONDS = 30.0
WF_RUN_TIMEOUT_SECONDS = 60.0
T = TypeVar("T")

# The client warns about its plain-text channel on every stub; on loopback that is intended.
logging.getLogger("LHConfig").setLevel(logging.ERROR)


def unique_name(prefix: str) -> str:
    """A metadata name no other test (or earlier run against the same stack) uses."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def lh_config(stack: StackAddresses) -> LHConfig:
    """A client configuration pointing at the stack's LittleHorse server."""
    config = LHConfig()
    config.load({"LHC_API_HOST": stack.littlehorse_host, "LHC_API_PORT": stack.littlehorse_port})
    return config


def wait_until_visible(fetch: Callable[[], T], what: str) -> T:
    """Call `fetch` until it stops answering NOT_FOUND; return what it returned."""
    deadline = time.monotonic() + VISIBLE_TIMEOUT_SECONDS
    while True:
        try:
            return fetch()
        except grpc.RpcError as exc:
            if exc.code() != grpc.StatusCode.NOT_FOUND or time.monotonic() > deadline:
                raise AssertionError(f"{what} did not become visible: {exc.details()}") from exc
        time.sleep(0.2)


def register_task_def(config: LHConfig, name: str, task: Callable[..., Any]) -> TaskDef:
    """Register a TaskDef whose signature is the Python function's, and wait until visible."""
    LHTaskWorker(task, name, config).register_task_def()
    stub = config.stub()
    return wait_until_visible(lambda: stub.GetTaskDef(TaskDefId(name=name)), f"TaskDef {name}")


def register_external_event_def(
    config: LHConfig,
    name: str,
    *,
    correlated: bool = False,
    payload_type: VariableType = VariableType.STR,
) -> ExternalEventDef:
    """Register an ExternalEventDef, with a CorrelatedEventConfig if `correlated`.

    Calls the RPC directly: the 1.3.0 client's `create_workflow_event_def` helper is broken and
    its ExternalEventDef helper cannot set a payload type.
    """
    request = PutExternalEventDefRequest(
        name=name,
        content_type=ReturnType(return_type=TypeDefinition(primitive_type=payload_type)),
        correlated_event_config=CorrelatedEventConfig() if correlated else None,
    )
    stub = config.stub()
    stub.PutExternalEventDef(request)
    return wait_until_visible(
        lambda: stub.GetExternalEventDef(ExternalEventDefId(name=name)),
        f"ExternalEventDef {name}",
    )


def register_wf_spec(config: LHConfig, workflow: Workflow) -> WfSpec:
    """Register the WfSpec compiled from `workflow` and wait until the server shows it."""
    create_workflow_spec(workflow, config)
    stub = config.stub()
    return wait_until_visible(
        lambda: stub.GetLatestWfSpec(GetLatestWfSpecRequest(name=workflow.name)),
        f"WfSpec {workflow.name}",
    )


def run_wf(config: LHConfig, wf_spec: WfSpec, **variables: Any) -> str:
    """Start a WfRun of `wf_spec` with the given input variables; return its id."""
    wf_run_id = uuid.uuid4().hex
    config.stub().RunWf(
        RunWfRequest(
            wf_spec_name=wf_spec.id.name,
            major_version=wf_spec.id.major_version,
            revision=wf_spec.id.revision,
            variables={k: to_variable_value(v) for k, v in variables.items()},
            id=wf_run_id,
        )
    )
    return wf_run_id


def wait_for_status(config: LHConfig, wf_run_id: str, status: LHStatus) -> WfRun:
    """Poll the WfRun until it reaches `status`; fail at once if it ends in another one."""
    stub = config.stub()
    finished = {LHStatus.COMPLETED, LHStatus.ERROR, LHStatus.EXCEPTION, LHStatus.HALTED}
    deadline = time.monotonic() + WF_RUN_TIMEOUT_SECONDS
    while True:
        wf_run = wait_until_visible(lambda: stub.GetWfRun(WfRunId(id=wf_run_id)), "WfRun")
        if wf_run.status == status:
            return wf_run
        if wf_run.status in finished or time.monotonic() > deadline:
            raise AssertionError(
                f"WfRun {wf_run_id} is {LHStatus.Name(wf_run.status)}, "
                f"expected {LHStatus.Name(status)}"
            )
        time.sleep(0.2)


def wait_for_external_event_node(config: LHConfig, wf_run_id: str) -> None:
    """Poll until the WfRun's entrypoint thread is waiting at an EXTERNAL_EVENT node."""
    stub = config.stub()
    deadline = time.monotonic() + WF_RUN_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        thread = stub.GetWfRun(WfRunId(id=wf_run_id)).thread_runs[0]
        node_run = stub.GetNodeRun(
            NodeRunId(
                wf_run_id=WfRunId(id=wf_run_id),
                thread_run_number=thread.number,
                position=thread.current_node_position,
            )
        )
        if node_run.HasField("external_event") and node_run.status == LHStatus.RUNNING:
            return
        time.sleep(0.2)
    raise AssertionError(f"WfRun {wf_run_id} never started waiting for an ExternalEvent")


def variable_value(config: LHConfig, wf_run_id: str, name: str) -> Any:
    """The current value of a variable of the WfRun's entrypoint thread, as a Python value."""
    variable = config.stub().GetVariable(
        VariableId(wf_run_id=WfRunId(id=wf_run_id), thread_run_number=0, name=name)
    )
    return extract_value(variable.value)


def post_external_event(config: LHConfig, wf_run_id: str, event_def: str, content: Any) -> None:
    """PutExternalEvent addressed to one WfRun."""
    config.stub().PutExternalEvent(
        PutExternalEventRequest(
            wf_run_id=WfRunId(id=wf_run_id),
            external_event_def_id=ExternalEventDefId(name=event_def),
            content=to_variable_value(content),
        )
    )


def post_correlated_event(config: LHConfig, key: str, event_def: str, content: Any) -> None:
    """PutCorrelatedEvent: the server finds the WfRun waiting on `key`."""
    config.stub().PutCorrelatedEvent(
        PutCorrelatedEventRequest(
            key=key,
            external_event_def_id=ExternalEventDefId(name=event_def),
            content=to_variable_value(content),
        )
    )


@contextmanager
def task_worker(config: LHConfig, task_def_name: str, task: Callable[..., Any]) -> Iterator[None]:
    """Run a Python task worker for `task_def_name` in a background thread for the block.

    `task` must be a coroutine function (`async def`), as the littlehorse client requires.
    """
    # The worker checks `task` against the TaskDef only once running in its thread; check here
    # so that a mismatch fails the test at once rather than leaving the WfRun waiting.
    LHTask(task, config.stub().GetTaskDef(TaskDefId(name=task_def_name)))
    worker = LHTaskWorker(task, task_def_name, config)
    loop = asyncio.new_event_loop()
    failure: list[BaseException] = []

    def serve() -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(worker.start())
        except BaseException as exc:  # reported to the test when the block ends
            failure.append(exc)
        finally:
            _cancel_pending(loop)
            loop.close()

    thread = threading.Thread(target=serve, name=f"lh-worker-{task_def_name}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        # The loop closes by itself if the worker already failed.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(worker.stop)
        thread.join(timeout=15)
    if failure:
        raise AssertionError(f"task worker {task_def_name} failed") from failure[0]


def _cancel_pending(loop: asyncio.AbstractEventLoop) -> None:
    pending = asyncio.all_tasks(loop)
    for task in pending:
        task.cancel()
    if pending:
        loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))


def register_struct_def(
    config: LHConfig, name: str, fields: dict[str, StructFieldDef]
) -> StructDef:
    """Register a StructDef with `fields` and wait until the server shows it."""
    stub = config.stub()
    stub.PutStructDef(PutStructDefRequest(name=name, struct_def=InlineStructDef(fields=fields)))
    return wait_until_visible(
        lambda: stub.GetStructDef(StructDefId(name=name, version=-1)), f"StructDef {name}"
    )


def external_event(config: LHConfig, wf_run_id: WfRunId, event_def: str, guid: str) -> Any:
    """The ExternalEvent `guid` of `event_def` posted to `wf_run_id`, as a Python value."""
    event = config.stub().GetExternalEvent(
        ExternalEventId(
            wf_run_id=wf_run_id,
            external_event_def_id=ExternalEventDefId(name=event_def),
            guid=guid,
        )
    )
    return extract_value(event.content)


def correlated_event(config: LHConfig, key: str, event_def: str) -> Any:
    """The content of the CorrelatedEvent with `key`, as a Python value."""
    event = config.stub().GetCorrelatedEvent(
        CorrelatedEventId(key=key, external_event_def_id=ExternalEventDefId(name=event_def))
    )
    return extract_value(event.content)
