"""``lhpipe demo wfruns``: what the demo's WfRuns are doing, read back from LittleHorse.

LittleHorse's own CLI (``lhctl``) is not part of the stack, so this prints, for the WfRuns asked
for (or the latest ones of a WfSpec), their status, where they wait, and their variables.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, TextIO

import grpc
from littlehorse.config import LHConfig
from littlehorse.model import (
    LHStatus,
    ListVariablesRequest,
    NodeRunId,
    SearchWfRunRequest,
    WfRunId,
)
from littlehorse.utils import extract_value

from lhpipe.core.timestamps import timestamp_text

#: How many WfRun ids a search reads before the latest are picked by start time.
SEARCH_LIMIT = 1000


def latest_wf_run_ids(config: LHConfig, wf_spec: str, count: int) -> list[Any]:
    """The ids of the ``count`` most recently started WfRuns of ``wf_spec``."""
    stub = config.stub()
    found = stub.SearchWfRun(SearchWfRunRequest(wf_spec_name=wf_spec, limit=SEARCH_LIMIT))
    runs = [stub.GetWfRun(wf_run_id) for wf_run_id in found.results]
    runs.sort(key=lambda run: run.start_time.ToDatetime(), reverse=True)
    return [run.id for run in runs[:count]]


def describe(config: LHConfig, wf_run_id: Any) -> str:
    """One WfRun: id, WfSpec and version, status, start time, the node it is at while it runs,
    then its entrypoint thread's variables."""
    stub = config.stub()
    run = stub.GetWfRun(wf_run_id)
    spec = run.wf_spec_id
    started = run.start_time.ToDatetime().replace(tzinfo=UTC)
    status = LHStatus.Name(run.status)
    line = (
        f"{_id_text(run.id)}  {spec.name} {spec.major_version}.{spec.revision}  {status}  "
        f"started {timestamp_text(started)}"
    )
    if run.status == LHStatus.RUNNING and run.thread_runs:
        thread = run.thread_runs[0]
        node = stub.GetNodeRun(
            NodeRunId(
                wf_run_id=run.id,
                thread_run_number=thread.number,
                position=thread.current_node_position,
            )
        )
        line += f"  at {node.node_name}"
    variables = stub.ListVariables(ListVariablesRequest(wf_run_id=run.id)).results
    values = [
        f"{v.id.name} = {_value_text(extract_value(v.value))}"
        for v in variables
        if v.id.thread_run_number == 0
    ]
    return line + ("\n    " + "  ".join(values) if values else "")


def print_wf_runs(
    config: LHConfig, out: TextIO, ids: Sequence[str], wf_spec: str, count: int
) -> int:
    """Print the WfRuns ``ids`` (``parent_child`` for a child), or else the latest ``count``
    of ``wf_spec``; returns the exit code (1 when there is none to show)."""
    wanted = [_parse_id(text) for text in ids] or latest_wf_run_ids(config, wf_spec, count)
    if not wanted:
        print(f"no WfRun of {wf_spec} yet", file=out)
        return 1
    missing = 0
    for wf_run_id in wanted:
        try:
            print(describe(config, wf_run_id), file=out)
        except grpc.RpcError as exc:
            if exc.code() != grpc.StatusCode.NOT_FOUND:
                raise
            print(f"{_id_text(wf_run_id)}: no such WfRun (yet)", file=out)
            missing += 1
    return 1 if missing else 0


def _parse_id(text: str) -> Any:
    parent = None
    for part in text.split("_"):
        parent = WfRunId(id=part, parent_wf_run_id=parent)
    return parent


def _id_text(wf_run_id: Any) -> str:
    if wf_run_id.HasField("parent_wf_run_id"):
        return f"{_id_text(wf_run_id.parent_wf_run_id)}_{wf_run_id.id}"
    return str(wf_run_id.id)


def _value_text(value: Any) -> str:
    if isinstance(value, bytes):
        return repr(value)
    return json.dumps(value, default=_json_default, ensure_ascii=False)


def _json_default(value: Any) -> str:
    # A UTC_TIMESTAMP variable as the engine writes every timestamp, not as str() would.
    if isinstance(value, datetime):
        return timestamp_text(value)
    return str(value)
