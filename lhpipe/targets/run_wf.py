"""``run_wf "wf-spec" { id = ... variables { ... } major_version = ... revision = ...
parent = ... }``: a ``RunWfRequest`` per record. The id is derived as delivery.md says
(written, else the ``wfRunId`` header, else the key, else generated), so a record sent twice
runs one WfRun (LittleHorse answers ``ALREADY_EXISTS``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from lhpipe.check.blocks import spec
from lhpipe.check.kinds import Entries, TargetCheck, read_target
from lhpipe.check.names import Scope
from lhpipe.check.program import TargetInfo
from lhpipe.core.errors import PermanentError
from lhpipe.core.evaluate import describe
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
from lhpipe.core.plans import Plan, RunWfPlan
from lhpipe.core.record import Record
from lhpipe.graph.kinds import GraphBuilder, TargetGraph
from lhpipe.runtime.kind import TargetDef
from lhpipe.syntax import ast
from lhpipe.targets import _littlehorse

if TYPE_CHECKING:
    from lhpipe.check.context import CheckContext


def _check(ctx: CheckContext, target: ast.Target, found: Entries, scope: Scope) -> TargetInfo:
    name = _littlehorse.lh_name(ctx, target, "WfSpec")
    return read_target(ctx, target, found, scope, name=name, rule=_littlehorse.setting_rule)


def _feeds(graph: GraphBuilder, target: TargetInfo) -> str | None:
    return graph.wf_spec(target.name) if target.name is not None else None


def _run_wf(target: PlannedTarget) -> Planner:
    wf_spec = target.info.name
    assert wf_spec is not None
    label = target.label
    pipeline = target.pipeline
    written_id = target.setting("id")
    parent = target.setting("parent")
    major_version = target.setting("major_version")
    revision = target.setting("revision")
    variables = target.map(target.info.variables) if target.info.variables is not None else None
    # Where an id came from, for the message of a bad one (formatted once, here).
    from_written = f"{label}: the written `id`"
    from_header = f"{label}: the wfRunId header"
    from_key = f"{label}: the record key"
    from_generated = f"{label}: the generated id"
    from_parent = f"{label}: `parent`"

    def plan(env: Mapping[str, Any], record: Record) -> Plan:
        wf_run_id = None if written_id is None else text_setting(written_id(env), label, "id")
        if wf_run_id is not None:
            check_id(wf_run_id, from_written)
        elif (wf_run_id := routing_header(record, "wfRunId")) is not None:
            check_id(wf_run_id, from_header)
        elif (wf_run_id := key_text(env, label)) is not None:
            if wf_run_id == record.webhook_id():  # a webhook's default key
                wf_run_id = webhook_id_as_id(wf_run_id)
            check_id(wf_run_id, from_key)
        else:
            wf_run_id = check_id(generated_id(pipeline, record), from_generated)
        parent_id = None if parent is None else text_setting(parent(env), label, "parent")
        if parent_id is not None:
            check_id(parent_id, from_parent, allow_parent=True)
        return RunWfPlan(
            wf_spec,
            wf_run_id,
            {name: evaluate(env) for name, evaluate in variables}
            if variables is not None
            else _value_fields(env, label),
            number_setting(major_version, env, label, "major_version"),
            number_setting(revision, env, label, "revision"),
            parent_id,
        )

    return plan


def _value_fields(env: Mapping[str, Any], label: str) -> dict[str, Any]:
    """Without ``variables``: each top-level field of ``value`` is a variable (delivery.md);
    a null value gives none."""
    value = env.get("value")
    if value is None:
        return {}
    if type(value) is dict or isinstance(value, Mapping):  # the first test skips the ABC's
        return dict(value)
    raise PermanentError(
        f"{label} has no `variables`, so each top-level field of the value becomes a "
        f"variable, but the value is {describe(value)}: write `variables {{ ... }}`",
        code="NOT_A_RECORD",
    )


TARGET = TargetDef(
    kind=ast.TargetKind("run_wf"),
    check=TargetCheck(spec("`run_wf`", "id major_version revision parent", "variables"), _check),
    graph=TargetGraph(feeds=_feeds, settings=_littlehorse.settings),
    planner=_run_wf,
    compares={
        "id": "wf_run_id",
        "variables": "variables",
        "major_version": "major_version",
        "revision": "revision",
        "parent": "parent_wf_run_id",
    },
    sender=_littlehorse.sender,
)
