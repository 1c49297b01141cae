"""``post_event "external-event-def" { wf_run_id = ... guid = ... content = ...
thread_run_number = ... node_run_position = ... }``: a ``PutExternalEventRequest`` per record,
to the WfRun named by ``wf_run_id`` (else the ``wfRunId`` header, else the key); the guid
(written, else the ``guid`` header, else generated from the record's position) makes a record
sent twice one event."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from lhpipe.check.blocks import spec
from lhpipe.check.kinds import Entries, TargetCheck, read_target
from lhpipe.check.names import Scope
from lhpipe.check.program import TargetInfo
from lhpipe.core.errors import PermanentError
from lhpipe.core.planning import (
    PlannedTarget,
    Planner,
    check_id,
    generated_id,
    key_text,
    number_setting,
    routing_header,
    text_setting,
    webhook_id_as_id,
)
from lhpipe.core.plans import Plan, PostEventPlan
from lhpipe.core.record import Record
from lhpipe.graph.kinds import GraphBuilder, TargetGraph
from lhpipe.runtime.kind import TargetDef
from lhpipe.syntax import ast
from lhpipe.targets import _littlehorse

if TYPE_CHECKING:
    from lhpipe.check.context import CheckContext


def _check(ctx: CheckContext, target: ast.Target, found: Entries, scope: Scope) -> TargetInfo:
    name = _littlehorse.lh_name(ctx, target, "ExternalEventDef")
    return read_target(ctx, target, found, scope, name=name, rule=_littlehorse.setting_rule)


def feeds_event_def(graph: GraphBuilder, target: TargetInfo) -> str | None:
    """The ExternalEventDef node an event target writes to."""
    return graph.external_event_def(target.name) if target.name else None


def _post_event(target: PlannedTarget) -> Planner:
    event_def = target.info.name
    assert event_def is not None
    label = target.label
    pipeline = target.pipeline
    written_wf_run_id = target.setting("wf_run_id")
    written_guid = target.setting("guid")
    content = target.setting("content")
    thread_run_number = target.setting("thread_run_number")
    node_run_position = target.setting("node_run_position")
    id_written = f"{label}: the written `wf_run_id`"
    id_header = f"{label}: the wfRunId header"
    id_key = f"{label}: the record key"
    guid_written = f"{label}: the written `guid`"
    guid_header = f"{label}: the guid header"
    guid_generated = f"{label}: the generated guid"

    def plan(env: Mapping[str, Any], record: Record) -> Plan:
        wf_run_id = (
            None
            if written_wf_run_id is None
            else text_setting(written_wf_run_id(env), label, "wf_run_id")
        )
        if wf_run_id is not None:
            check_id(wf_run_id, id_written, allow_parent=True)
        elif (wf_run_id := routing_header(record, "wfRunId")) is not None:
            check_id(wf_run_id, id_header, allow_parent=True)
        elif (wf_run_id := key_text(env, label)) is not None:
            if wf_run_id == record.webhook_id():  # a webhook's default key, as for run_wf
                wf_run_id = webhook_id_as_id(wf_run_id)
            check_id(wf_run_id, id_key, allow_parent=True)
        else:
            raise PermanentError(
                f"{label}: no WfRun id: `wf_run_id` is not written, and the record has no "
                "wfRunId header and no key",
                code="BAD_ID",
            )
        guid = None if written_guid is None else text_setting(written_guid(env), label, "guid")
        if guid is not None:
            check_id(guid, guid_written)
        elif (guid := routing_header(record, "guid")) is not None:
            check_id(guid, guid_header)
        else:
            guid = check_id(generated_id(pipeline, record), guid_generated)
        return PostEventPlan(
            event_def,
            wf_run_id,
            guid,
            env.get("value") if content is None else content(env),
            number_setting(thread_run_number, env, label, "thread_run_number"),
            number_setting(node_run_position, env, label, "node_run_position"),
        )

    return plan


TARGET = TargetDef(
    kind=ast.TargetKind("post_event"),
    check=TargetCheck(
        spec("`post_event`", "wf_run_id guid content thread_run_number node_run_position"), _check
    ),
    graph=TargetGraph(feeds=feeds_event_def, settings=_littlehorse.settings),
    planner=_post_event,
    compares={
        "wf_run_id": "wf_run_id",
        "guid": "guid",
        "content": "content",
        "thread_run_number": "thread_run_number",
        "node_run_position": "node_run_position",
    },
    sender=_littlehorse.sender,
)
