"""`from lh_output` through `lhpipe run` against the real stack: completed WfRuns of a WfSpec with
PUBLIC variables are exported (file, Kafka topic, HTTP) with their variables and start follow-up
WfRuns; an HTTP export that is down for a while is retried until it recovers, and a permanent
4xx sends the output-topic record to the dead-letter topic."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import grpc
import pytest
from engine_run import (
    LhpipeRun,
    committed,
    create_topic,
    read_all,
    topic_ends,
    unique,
    wait_until,
    write_pipelines,
)
from lh import (
    lh_config,
    post_external_event,
    register_external_event_def,
    register_wf_spec,
    run_wf,
    unique_name,
    variable_value,
    wait_for_external_event_node,
    wait_for_status,
)
from littlehorse.config import LHConfig
from littlehorse.model import LHStatus, OutputTopicRecord, WfRunId, WfSpec
from littlehorse.workflow import Workflow, WorkflowThread

from lhpipe.stack.addresses import StackAddresses

pytestmark = pytest.mark.integration

WAIT_SECONDS = 90.0
APPLICANTS = ("ada", "grace")


def _onboarding_spec(config: LHConfig) -> WfSpec:
    """A WfSpec that completes at once, with one PUBLIC and one private variable."""

    def entrypoint(wf: WorkflowThread) -> None:
        wf.declare_str("applicant").required().as_public()
        wf.declare_str("internal_note").required()

    return register_wf_spec(config, Workflow(unique_name("it-lhout"), entrypoint))


def _run_to_completion(
    config: LHConfig, wf_spec: WfSpec, applicants: tuple[str, ...]
) -> dict[str, str]:
    """Start one WfRun per applicant and wait for each to complete; id -> applicant."""
    runs = {run_wf(config, wf_spec, applicant=a, internal_note="private"): a for a in applicants}
    for wf_run_id in runs:
        wait_for_status(config, wf_run_id, LHStatus.COMPLETED)
    return runs


def _file_lines(path: Path) -> list[Any]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def _wf_run_status(config: LHConfig, wf_run_id: str) -> int | None:
    try:
        return int(config.stub().GetWfRun(WfRunId(id=wf_run_id)).status)
    except grpc.RpcError as exc:
        if exc.code() == grpc.StatusCode.NOT_FOUND:
            return None
        raise


def test_completed_wf_runs_are_exported_with_their_variables_and_start_follow_ups(
    stack: StackAddresses, tmp_path: Path
) -> None:
    config = lh_config(stack)
    wf_spec = _onboarding_spec(config)
    spec_name = wf_spec.id.name

    def follow_up(wf: WorkflowThread) -> None:
        wf.declare_str("applicant").required()
        wf.declare_str("previous").required()

    follow_spec = register_wf_spec(config, Workflow(unique_name("it-lhout-next"), follow_up))
    token = unique("lhout").split("-")[1]
    export_topic = f"it-lhout-export-{token}"
    create_topic(stack, export_topic)
    folder = write_pipelines(
        tmp_path / "run",
        f"""
pipeline export_{token} {{
  from lh_output {{ wf_spec = "{spec_name}" }}
  where event.kind == "wf_run" and event.status == "COMPLETED"
  let line = {{ wf_run_id = event.wf_run_id  wf_spec = event.wf_spec.name
               status = event.status  variables = event.variables
               ended = event.payload.wfRun.endTime != null }}
  to file "out/completed.jsonl" {{ value = line }}
  to topic "{export_topic}" {{ key = event.wf_run_id  value = line }}
}}

pipeline follow_{token} {{
  from lh_output {{ kinds = [wf_run]  wf_spec = "{spec_name}" }}
  where event.status == "COMPLETED"
  run_wf "{follow_spec.id.name}" {{
    id = "${{event.wf_run_id}}-next"
    variables {{ applicant = event.variables.applicant  previous = event.wf_run_id }}
  }}
}}
""",
    )
    with LhpipeRun(folder) as lhpipe:
        lhpipe.wait_ready()
        runs = _run_to_completion(config, wf_spec, APPLICANTS)
        out_file = folder / "out" / "completed.jsonl"
        wait_until(lambda: len(_file_lines(out_file)) >= len(runs), WAIT_SECONDS, "the file export")
        for wf_run_id in runs:
            wait_until(
                lambda wf_run_id=wf_run_id: (
                    _wf_run_status(config, f"{wf_run_id}-next") == LHStatus.COMPLETED
                ),
                WAIT_SECONDS,
                f"the follow-up WfRun of {wf_run_id}",
            )
        assert lhpipe.terminate() == 0, lhpipe.log()
    # Read once lhpipe has stopped: nothing more can come.
    exported = read_all(stack, export_topic, expected=len(runs))

    expected = {
        wf_run_id: {
            "wf_run_id": wf_run_id,
            "wf_spec": spec_name,
            "status": "COMPLETED",
            "ended": True,
            # Only the PUBLIC variable reaches the output topic.
            "variables": {"applicant": applicant},
        }
        for wf_run_id, applicant in runs.items()
    }
    lines = _file_lines(out_file)
    assert sorted(lines, key=lambda line: line["wf_run_id"]) == sorted(
        expected.values(), key=lambda line: line["wf_run_id"]
    )
    assert {m.key().decode(): json.loads(m.value()) for m in exported} == expected
    assert len(exported) == len(runs)
    for wf_run_id, applicant in runs.items():
        assert variable_value(config, f"{wf_run_id}-next", "applicant") == applicant
        assert variable_value(config, f"{wf_run_id}-next", "previous") == wf_run_id


class FlakyCrm:
    """An HTTP endpoint that answers 503 for its first ``down_seconds`` (counted from the first
    request), then 422 for the applicant ``reject`` and 204 for everyone else."""

    def __init__(self, down_seconds: float) -> None:
        self.answers: list[tuple[int, dict[str, Any]]] = []
        self._first: float | None = None
        crm = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["content-length"])))
                now = time.monotonic()
                if crm._first is None:
                    crm._first = now
                if now - crm._first < down_seconds:
                    status = 503
                elif body.get("applicant") == "reject":
                    status = 422
                else:
                    status = 204
                crm.answers.append((status, body))
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                """Quiet: the test reads the answers."""

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/customers"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def delivered(self) -> set[str]:
        return {body["wf_run_id"] for status, body in self.answers if status == 204}

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def crm() -> Iterator[FlakyCrm]:
    server = FlakyCrm(down_seconds=4.0)
    yield server
    server.close()


def test_an_export_down_for_a_while_loses_nothing_and_a_4xx_is_dead_lettered(
    stack: StackAddresses, crm: FlakyCrm, tmp_path: Path
) -> None:
    config = lh_config(stack)
    wf_spec = _onboarding_spec(config)
    token = unique("lhout").split("-")[1]
    dlq = f"it-lhout-dlq-{token}"
    pipeline = f"crm_{token}"
    folder = write_pipelines(
        tmp_path / "run",
        f"""
pipeline {pipeline} {{
  from lh_output {{ kinds = [wf_run]  wf_spec = "{wf_spec.id.name}" }}
  where event.status == "COMPLETED"
  to http "{crm.url}" {{
    method = "POST"
    body = {{ wf_run_id = event.wf_run_id  applicant = event.variables.applicant }}
  }}
  on_error {{ dead_letter = "{dlq}" }}
}}
""",
    )
    with LhpipeRun(folder) as lhpipe:
        lhpipe.wait_ready()
        runs = _run_to_completion(config, wf_spec, (*APPLICANTS, "reject"))
        accepted = {wf_run_id for wf_run_id, a in runs.items() if a != "reject"}
        wait_until(lambda: crm.delivered() >= accepted, WAIT_SECONDS, "the CRM to get every one")
        assert lhpipe.terminate() == 0, lhpipe.log()
    dead = read_all(stack, dlq, expected=1)

    statuses = [status for status, _ in crm.answers]
    assert statuses[0] == 503 and statuses.count(503) >= 2, statuses
    assert crm.delivered() == accepted
    (rejected,) = [wf_run_id for wf_run_id, a in runs.items() if a == "reject"]
    assert (422, {"wf_run_id": rejected, "applicant": "reject"}) in crm.answers
    assert len(dead) == 1
    message = dead[0]
    assert message.key() == rejected.encode()
    record = OutputTopicRecord.FromString(message.value())  # the original record, byte for byte
    assert record.wf_run.id.id == rejected and record.wf_run.status == LHStatus.COMPLETED
    headers = {name: value.decode() for name, value in message.headers()}
    assert headers["lhpipe.error.class"] == "permanent"
    assert headers["lhpipe.error.code"] == "HTTP_422"
    assert headers["lhpipe.pipeline"] == pipeline
    assert headers["lhpipe.source.topic"] == stack.execution_output_topic


def _records_of(
    stack: StackAddresses, wf_run_id: str, since: dict[int, int]
) -> list[tuple[int, int, OutputTopicRecord]]:
    """(partition, offset, record) of every committed output-topic record of the WfRun, read
    from ``since`` (where the topic ended when the test started: it holds what every earlier
    run on the stack left there)."""
    found = []
    for message in read_all(stack, stack.execution_output_topic, expected=1, since=since):
        if message.key() == wf_run_id.encode():
            record = OutputTopicRecord.FromString(message.value())
            found.append((message.partition(), message.offset(), record))
    return found


def test_a_restart_keeps_the_variables_of_wf_runs_that_were_running(
    stack: StackAddresses, tmp_path: Path
) -> None:
    config = lh_config(stack)
    start = topic_ends(stack, stack.execution_output_topic)
    decision_event = unique_name("it-lhout-decision")
    register_external_event_def(config, decision_event)

    def entrypoint(wf: WorkflowThread) -> None:
        wf.declare_str("applicant").required().as_public()
        decision = wf.declare_str("decision").as_public()
        wf.mutate(decision, "ASSIGN", wf.wait_for_event(decision_event))

    wf_spec = register_wf_spec(config, Workflow(unique_name("it-lhout-restart"), entrypoint))
    token = unique("lhout").split("-")[1]
    pipeline = f"restart_{token}"
    folder = write_pipelines(
        tmp_path / "run",
        f"""
pipeline {pipeline} {{
  from lh_output {{ kinds = [wf_run]  wf_spec = "{wf_spec.id.name}" }}
  where event.status == "COMPLETED"
  to file "out/completed.jsonl" {{
    value = {{ id = event.wf_run_id  variables = event.variables }}
  }}
}}
""",
    )
    out_file = folder / "out" / "completed.jsonl"
    group = f"lhpipe-{pipeline}"

    with LhpipeRun(folder) as first:
        first.wait_ready()
        wf_run_id = run_wf(config, wf_spec, applicant="Ada")
        wait_for_external_event_node(config, wf_run_id)
        # Every record of the WfRun so far (its `applicant` among them) is read and committed.
        before = wait_until(
            lambda: [r for r in _records_of(stack, wf_run_id, start) if r[2].HasField("variable")],
            WAIT_SECONDS,
            "the WfRun's variable records",
        )
        partition = before[0][0]
        last = max(offset for _, offset, _ in before)
        wait_until(
            lambda: (
                committed(stack, group, stack.execution_output_topic, partition + 1)[partition]
                > last
            ),
            WAIT_SECONDS,
            "the group to commit past the WfRun's variables",
        )
        assert first.terminate() == 0, first.log()

    post_external_event(config, wf_run_id, decision_event, "approved")
    wait_for_status(config, wf_run_id, LHStatus.COMPLETED)
    with LhpipeRun(folder) as second:
        second.wait_ready()
        lines = wait_until(lambda: _file_lines(out_file), WAIT_SECONDS, "the completed WfRun")
        log = second.log()
        assert second.terminate() == 0, second.log()

    # `applicant` was committed before the restart: only the replay can have brought it back.
    assert lines == [{"id": wf_run_id, "variables": {"applicant": "Ada", "decision": "approved"}}]
    assert "replayed" in log and "before the committed offsets" in log, log
