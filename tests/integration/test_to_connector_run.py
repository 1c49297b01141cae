"""`to connector` against the real stack: `from lh_output` → `to connector` with a
FileStreamSink on the local Kafka Connect worker. 50 completed WfRuns give 50 lines in the
sink's file, one per WfRun; a reload (`--watch`) that changes the connector's `file` updates
the connector on the worker, and the next WfRuns land in the new file; removing the
declaration deletes the connector.

lhpipe runs with its own `LHPIPE_CONNECT_OWNER`, so that it never removes the connectors of
another lhpipe using the same worker; names, topics and files carry a token.
"""

from __future__ import annotations

import json
import uuid
from collections import Counter
from pathlib import Path

import pytest
from engine_run import LhpipeRun, wait_until, write_pipelines
from lh import lh_config, register_wf_spec, run_wf, unique_name, wait_for_status
from littlehorse.model import LHStatus
from littlehorse.workflow import Workflow, WorkflowThread
from test_connectors_run import connector_config

from lhpipe.stack.addresses import StackAddresses

pytestmark = pytest.mark.integration

READY_TIMEOUT_SECONDS = 120.0
# The worker's FileStreamSink flushes its file at each offset commit (every second on the
# local stack; a worker started with Kafka's defaults waits a minute).
LINES_TIMEOUT_SECONDS = 150.0
FIRST_BATCH = 50


def _lines(path: Path) -> list[dict[str, str]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def _declarations(token: str, wf_spec: str, sink_file: Path) -> str:
    return f"""
connector export_{token} {{
  class = "FileStreamSink"
  topic = "to-connector-{token}"
  config {{ file = "{sink_file}" }}
}}

pipeline archive_{token} {{
  from lh_output {{ kinds = [wf_run]  wf_spec = "{wf_spec}" }}
  where event.status == "COMPLETED"
  to connector export_{token} {{
    key = event.wf_run_id
    value = {{ wf_run_id = event.wf_run_id, customer = event.variables.customer }}
  }}
}}
"""


def test_completed_wf_runs_reach_a_file_stream_sink_once_each_and_edits_reach_the_worker(
    connect: StackAddresses, tmp_path: Path
) -> None:
    config = lh_config(connect)

    def entrypoint(wf: WorkflowThread) -> None:
        wf.declare_str("customer").required().as_public()

    wf_spec = register_wf_spec(config, Workflow(unique_name("it-to-connector"), entrypoint))
    token = uuid.uuid4().hex[:10]
    name = f"export_{token}"
    first, second = tmp_path / "sink-1.jsonl", tmp_path / "sink-2.jsonl"
    folder = write_pipelines(tmp_path / "lhp", _declarations(token, wf_spec.id.name, first))
    env = {"LHPIPE_CONNECT_OWNER": f"test-{token}"}
    with LhpipeRun(folder, env=env, args=["--watch"]) as run:
        body = run.wait_ready(READY_TIMEOUT_SECONDS)
        assert body["pipelines"][f"connector:{name}"]["stats"]["connector"] == "RUNNING"
        deployed = connector_config(connect, name)
        assert deployed is not None
        assert deployed["connector.class"] == "FileStreamSink"
        assert deployed["topics"] == f"to-connector-{token}"
        assert deployed["file"] == str(first)

        started = {run_wf(config, wf_spec, customer=f"c{i}") for i in range(FIRST_BATCH)}
        for wf_run_id in started:
            wait_for_status(config, wf_run_id, LHStatus.COMPLETED)
        wait_until(lambda: len(_lines(first)) >= FIRST_BATCH, LINES_TIMEOUT_SECONDS, "50 lines")
        lines = _lines(first)
        counts = Counter(line["wf_run_id"] for line in lines)
        assert set(counts) == started
        assert [n for n in counts.values() if n != 1] == []
        assert len(lines) == FIRST_BATCH
        customers = {line["wf_run_id"]: line["customer"] for line in lines}
        assert sorted(customers.values()) == sorted(f"c{i}" for i in range(FIRST_BATCH))

        # A reload that changes the connector's config updates it on the worker.
        write_pipelines(folder, _declarations(token, wf_spec.id.name, second))

        def moved() -> bool:
            current = connector_config(connect, name)
            return current is not None and current["file"] == str(second)

        wait_until(moved, 60, "the connector's new file on the worker")
        later = {run_wf(config, wf_spec, customer=f"later{i}") for i in range(3)}
        for wf_run_id in later:
            wait_for_status(config, wf_run_id, LHStatus.COMPLETED)
        wait_until(
            lambda: later <= {line["wf_run_id"] for line in _lines(second)},
            LINES_TIMEOUT_SECONDS,
            "the later WfRuns in the new file",
        )
        assert {line["wf_run_id"] for line in _lines(first)} == started

        # Removing the declaration deletes the connector.
        write_pipelines(folder, "// nothing declared\n")
        wait_until(lambda: connector_config(connect, name) is None, 60, "the connector deleted")
