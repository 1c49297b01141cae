"""The lh_output source: OutputTopicRecords as `event`, the kinds / wf_spec filters, the topic."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from littlehorse.model import (
    ExternalEvent,
    ExternalEventDefId,
    ExternalEventId,
    LHStatus,
    OutputTopicRecord,
    TaskAttempt,
    TaskDefId,
    TaskRun,
    TaskRunId,
    TaskStatus,
    UserTaskDefId,
    UserTaskRun,
    UserTaskRunId,
    UserTaskRunStatus,
    Variable,
    VariableId,
    VariableValue,
    WfRun,
    WfRunId,
    WfSpecId,
    WorkflowEvent,
    WorkflowEventDefId,
    WorkflowEventId,
)

from lhpipe.check.scopes import EVENT
from lhpipe.core import jsonenc
from lhpipe.core.errors import DecodeError
from lhpipe.core.record import KafkaOrigin, Record
from lhpipe.core.steps import compile_steps
from lhpipe.kinds import compile_program, load_texts
from lhpipe.settings import Settings
from lhpipe.sources.lh_output import SOURCE as LH_OUTPUT
from lhpipe.sources.lh_output import output_topic
from lhpipe.sources.lh_output_reader import (
    EventDecoder,
    OutputTopicSource,
    WfRunMemory,
    plain_value,
    wf_run_id_text,
)

WF_SPEC = WfSpecId(name="know-your-customer", major_version=2, revision=1)
RUN = WfRunId(id="run-1")


def _stamp(seconds: int) -> Timestamp:
    return Timestamp(seconds=seconds)


def _wf_run(status: int, run: WfRunId = RUN, *, ended: bool = False) -> OutputTopicRecord:
    wf_run = WfRun(id=run, wf_spec_id=WF_SPEC, status=status, start_time=_stamp(100))
    if ended:
        wf_run.end_time.CopyFrom(_stamp(160))
    return OutputTopicRecord(timestamp=_stamp(160 if ended else 100), wf_run=wf_run)


def _variable(name: str, value: VariableValue, run: WfRunId = RUN) -> OutputTopicRecord:
    return OutputTopicRecord(
        timestamp=_stamp(120),
        variable=Variable(id=VariableId(wf_run_id=run, name=name), value=value, wf_spec_id=WF_SPEC),
    )


def _task_run() -> OutputTopicRecord:
    first = TaskAttempt(status=TaskStatus.TASK_FAILED, start_time=_stamp(121))
    second = TaskAttempt(
        status=TaskStatus.TASK_SUCCESS,
        start_time=_stamp(130),
        end_time=_stamp(131),
        output=VariableValue(str="hello Ada"),
    )
    return OutputTopicRecord(
        timestamp=_stamp(131),
        task_run=TaskRun(
            id=TaskRunId(wf_run_id=RUN, task_guid="0-1"),
            task_def_id=TaskDefId(name="greet"),
            attempts=[first, second],
            status=TaskStatus.TASK_SUCCESS,
        ),
    )


def _decode(decoder: EventDecoder, record: OutputTopicRecord) -> Any:
    return decoder.decode_value(record.SerializeToString())


# -- the event ----------------------------------------------------------------------------------


def test_a_wf_run_record_carries_the_public_variables_read_before_it() -> None:
    decoder = EventDecoder()
    running = _decode(decoder, _wf_run(LHStatus.RUNNING))
    assert running["variables"] == {}
    assert running["end_time"] is None
    _decode(decoder, _variable("applicant", VariableValue()))  # declared, not set yet
    _decode(decoder, _variable("applicant", VariableValue(str="Ada")))
    _decode(decoder, _variable("score", VariableValue(int=7)))
    completed = _decode(decoder, _wf_run(LHStatus.COMPLETED, ended=True))
    assert completed["kind"] == "wf_run"
    assert completed["wf_run_id"] == "run-1"
    assert completed["status"] == "COMPLETED"
    assert completed["wf_spec"] == {
        "name": "know-your-customer",
        "major_version": 2,
        "revision": 1,
    }
    assert completed["variables"] == {"applicant": "Ada", "score": 7}
    assert completed["start_time"] == datetime.fromtimestamp(100, UTC)
    assert completed["end_time"] == datetime.fromtimestamp(160, UTC)
    assert completed["timestamp"] == datetime.fromtimestamp(160, UTC)
    assert completed["payload"]["wfRun"]["status"] == "COMPLETED"
    # Each event keeps its own copy: a later update does not change an event in flight.
    _decode(decoder, _variable("score", VariableValue(int=8)))
    assert completed["variables"]["score"] == 7


def test_a_variable_record_names_the_variable_and_its_new_value() -> None:
    event = _decode(EventDecoder(), _variable("profile", VariableValue(json_obj='{"a": [1]}')))
    assert event["kind"] == "variable"
    assert event["variable"] == {"name": "profile", "value": {"a": [1]}}
    assert event["variables"] == {"profile": {"a": [1]}}
    assert event["status"] is None and event["task"] is None


def test_a_task_run_record_takes_its_wf_spec_from_earlier_records_of_the_wf_run() -> None:
    decoder = EventDecoder()
    _decode(decoder, _wf_run(LHStatus.RUNNING))
    event = _decode(decoder, _task_run())
    assert event["kind"] == "task_run"
    assert event["status"] == "TASK_SUCCESS"
    assert event["task"] == {"name": "greet", "attempt": 2, "output": "hello Ada"}
    assert event["wf_spec"] is not None and event["wf_spec"]["name"] == "know-your-customer"
    assert (event["start_time"], event["end_time"]) == (
        datetime.fromtimestamp(130, UTC),
        datetime.fromtimestamp(131, UTC),
    )


def test_a_record_of_a_wf_run_not_seen_before_has_no_wf_spec() -> None:
    event = _decode(EventDecoder(), _task_run())
    assert event["wf_spec"] is None


def test_external_event_user_task_and_workflow_event_records() -> None:
    decoder = EventDecoder()
    external = _decode(
        decoder,
        OutputTopicRecord(
            external_event=ExternalEvent(
                id=ExternalEventId(
                    wf_run_id=RUN,
                    external_event_def_id=ExternalEventDefId(name="identity-verified"),
                    guid="g-1",
                ),
                content=VariableValue(bool=True),
            )
        ),
    )
    assert external["external_event"] == {
        "name": "identity-verified",
        "guid": "g-1",
        "content": True,
    }
    user_task = _decode(
        decoder,
        OutputTopicRecord(
            user_task_run=UserTaskRun(
                id=UserTaskRunId(wf_run_id=RUN, user_task_guid="u-1"),
                user_task_def_id=UserTaskDefId(name="approve"),
                user_group="reviewers",
                status=UserTaskRunStatus.ASSIGNED,
            )
        ),
    )
    assert user_task["status"] == "ASSIGNED"
    assert user_task["user_task"] == {"name": "approve", "user_id": None, "user_group": "reviewers"}
    workflow_event = _decode(
        decoder,
        OutputTopicRecord(
            workflow_event=WorkflowEvent(
                id=WorkflowEventId(
                    wf_run_id=RUN, workflow_event_def_id=WorkflowEventDefId(name="progress")
                ),
                content=VariableValue(double=0.5),
            )
        ),
    )
    assert workflow_event["workflow_event"] == {"name": "progress", "content": 0.5}


def test_every_event_has_exactly_the_fields_of_the_checked_type() -> None:
    event = _decode(EventDecoder(), _wf_run(LHStatus.RUNNING))
    assert set(event) == set(EVENT.fields)


def test_an_event_encodes_as_json() -> None:
    decoder = EventDecoder()
    _decode(decoder, _variable("when", VariableValue(utc_timestamp=_stamp(0))))
    event = _decode(decoder, _wf_run(LHStatus.COMPLETED, ended=True))
    line = json.loads(jsonenc.dumps(event))
    assert line["variables"] == {"when": "1970-01-01T00:00:00.000Z"}
    assert line["end_time"] == "1970-01-01T00:02:40.000Z"
    # The payload, made on first read, is the record's protobuf JSON (timestamps as lhpipe
    # writes every one).
    assert line["payload"]["wfRun"]["id"] == {"id": "run-1"}
    assert line["payload"]["timestamp"] == "1970-01-01T00:02:40.000Z"
    assert dict(event["payload"]) == line["payload"]


def test_a_child_wf_run_id_is_written_parent_underscore_child() -> None:
    child = WfRunId(id="child", parent_wf_run_id=WfRunId(id="parent"))
    assert wf_run_id_text(child) == "parent_child"
    assert plain_value(VariableValue(wf_run_id=child)) == "parent_child"
    assert plain_value(VariableValue(json_arr="not json")) == "not json"


def test_a_value_that_is_not_an_output_topic_record_is_a_decode_error() -> None:
    with pytest.raises(DecodeError, match="not a LittleHorse OutputTopicRecord"):
        EventDecoder().decode_value(b"\xff\xff\xff")


def test_payloads_event_does_not_describe_decode_to_none() -> None:
    record = OutputTopicRecord()  # no payload set, as for a kind newer than lhpipe
    assert EventDecoder().decode_value(record.SerializeToString()) is None
    assert EventDecoder().decode_key(b"run-1") == "run-1"


def test_the_memory_forgets_the_least_recently_seen_wf_run() -> None:
    memory = WfRunMemory(limit=2)
    memory.facts("a").variables["x"] = 1
    memory.facts("b")
    memory.facts("a")
    memory.facts("c")
    assert len(memory) == 2
    assert memory.facts("a").variables == {"x": 1}
    assert memory.facts("b").variables == {}


# -- the filters ----------------------------------------------------------------------------------

FILTERED = """
pipeline done {
  from lh_output { kinds = [wf_run]  wf_spec = "know-your-customer" }
  where event.status == "COMPLETED"
  to log { value = event.variables }
}

pipeline every_kind {
  from lh_output {}
  to log
}
"""


def _program(text: str = FILTERED) -> Any:
    result = load_texts({"p.lhp": text})
    assert result.program is not None, result.diagnostics
    return result.program


def test_kinds_and_wf_spec_drop_records_like_a_where() -> None:
    program = _program()
    done = program.pipelines["done"]
    steps = compile_steps(done, program, LH_OUTPUT.filter(done.source))
    decoder = EventDecoder()
    variable = _decode(decoder, _variable("applicant", VariableValue(str="Ada")))
    completed = _decode(decoder, _wf_run(LHStatus.COMPLETED, ended=True))
    other = dict(completed, wf_spec={"name": "other", "major_version": 0, "revision": 0})
    unknown = dict(completed, wf_spec=None)
    assert steps({"event": variable}) is None
    assert steps({"event": other}) is None
    assert steps({"event": unknown}) is None
    assert steps({"event": None}) is None
    assert steps({"event": completed}) is not None
    every_kind = program.pipelines["every_kind"]
    every = compile_steps(every_kind, program, LH_OUTPUT.filter(every_kind.source))
    assert every({"event": variable}) is not None
    assert every({"event": None}) is None


def test_an_lhpipe_test_event_of_another_kind_is_left_out(tmp_path: Path) -> None:
    from lhpipe.engine.testing import run_tests

    program = _program(
        FILTERED
        + """
test "a variable record is not a wf_run" {
  pipeline = done
  given { value = { kind = "variable", status = "COMPLETED" } }
  expect to log { value = {} }
}
"""
    )
    (outcome,) = run_tests(program)
    assert outcome.problems == ("the event was left out by the source's `kinds` / `wf_spec`",)


# -- the source ----------------------------------------------------------------------------------


def test_the_topic_is_cluster_tenant_execution_unless_overridden() -> None:
    assert output_topic(Settings(environ={})) == "lhpipe_default_execution"
    assert (
        output_topic(Settings(environ={"LHPIPE_LH_CLUSTER_ID": "prod", "LHC_TENANT_ID": "acme"}))
        == "prod_acme_execution"
    )
    assert (
        output_topic(Settings(environ={"LHPIPE_LH_OUTPUT_TOPIC": "mirror", "LHC_TENANT_ID": "x"}))
        == "mirror"
    )


class _NoClients:
    def kafka_producer(self) -> Any:
        raise AssertionError("not needed")

    def schema_registry(self) -> Any:
        raise AssertionError("not needed")

    def sender(self, kind: Any) -> Any:
        raise AssertionError("not needed")


def test_the_source_reads_committed_records_of_the_tenant_topic_as_its_group() -> None:
    program = _program()
    spec = compile_program(program).pipelines["done"]
    parts = LH_OUTPUT.parts(
        spec, program, Settings(environ={"LHC_TENANT_ID": "acme"}), _NoClients()
    )
    source = parts.make_source(object())  # type: ignore[arg-type]
    assert isinstance(source, OutputTopicSource)
    assert (source.topic, source.group) == ("lhpipe_acme_execution", "lhpipe-done")
    assert source._config["isolation.level"] == "read_committed"
    raw = _wf_run(LHStatus.COMPLETED, ended=True).SerializeToString()
    record = Record(KafkaOrigin("lhpipe_acme_execution", 1, 7), b"run-1", raw)
    value = parts.decoder.decode_value(raw)
    env = parts.initial_env(record, parts.decoder.decode_key(b"run-1"), value)
    assert env["event"] is env["value"]
    assert env["key"] == "run-1"
    assert env["record"]["offset"] == 7


# -- the replay at assignment ------------------------------------------------------------------


class _Message:
    def __init__(self, partition: int, offset: int, value: bytes | None) -> None:
        self._partition, self._offset, self._value = partition, offset, value

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset

    def value(self) -> bytes | None:
        return self._value

    def error(self) -> None:
        return None


class _Reader:
    """A consumer over fixed partitions: `consume` hands out what follows the assigned offsets."""

    def __init__(self, partitions: dict[int, list[bytes | None]]) -> None:
        self._partitions = partitions
        self._positions: dict[int, int] = {}

    def assign(self, partitions: list[Any]) -> None:
        self._positions = {tp.partition: tp.offset for tp in partitions}

    def consume(self, num_messages: int, timeout: float) -> list[_Message]:
        batch = []
        for partition, position in self._positions.items():
            values = self._partitions[partition]
            if position < len(values):
                batch.append(_Message(partition, position, values[position]))
                self._positions[partition] = position + 1
        return batch

    def position(self, partitions: list[Any]) -> list[Any]:
        from confluent_kafka import TopicPartition

        return [
            TopicPartition(tp.topic, tp.partition, self._positions[tp.partition])
            for tp in partitions
        ]


def test_the_replay_rebuilds_the_memory_up_to_the_committed_offset() -> None:
    from lhpipe.sources.lh_output_reader import _replay

    other = WfRunId(id="run-2")
    partition_0 = [
        _variable("applicant", VariableValue(str="Ada")).SerializeToString(),
        None,  # a record without a value is passed over
        b"\xff\xff",  # neither is one that does not decode
        _variable("applicant", VariableValue(str="Ada Lovelace")).SerializeToString(),
        _variable("applicant", VariableValue(str="after the commit")).SerializeToString(),
    ]
    partition_1 = [_variable("score", VariableValue(int=3), other).SerializeToString()]
    memory = WfRunMemory()
    reader = _Reader({0: partition_0, 1: partition_1})
    replayed = _replay(reader, "topic", {0: (0, 4), 1: (0, 1)}, memory)  # type: ignore[arg-type]
    assert replayed == 3
    assert memory.facts("run-1").variables == {"applicant": "Ada Lovelace"}
    assert memory.facts("run-1").wf_spec == {
        "name": "know-your-customer",
        "major_version": 2,
        "revision": 1,
    }
    assert memory.facts("run-2").variables == {"score": 3}


def test_a_replay_of_several_partitions_forgets_none_of_the_wf_runs_it_read() -> None:
    """The records of the partitions interleave: with room for fewer WfRuns than the replay
    reads, the first partition's WfRuns (a WfRun still running among them) were forgotten."""
    from lhpipe.sources.lh_output_reader import _replay

    partitions = {
        p: [
            _variable(
                "n", VariableValue(int=p * 10 + i), WfRunId(id=f"run-{p}-{i}")
            ).SerializeToString()
            for i in range(3)
        ]
        for p in range(3)
    }
    memory = WfRunMemory(limit=4)
    reader = _Reader(partitions)
    starts = {p: (0, 3) for p in partitions}
    assert _replay(reader, "topic", starts, memory) == 9  # type: ignore[arg-type]
    for p in range(3):
        for i in range(3):
            assert memory.facts(f"run-{p}-{i}").variables == {"n": p * 10 + i}
    assert len(memory) == 9


def test_the_lookback_setting() -> None:
    from lhpipe.runtime.kind import PipelineNotRunnable
    from lhpipe.sources.lh_output import DEFAULT_LOOKBACK, lookback

    assert lookback(Settings(environ={})) == DEFAULT_LOOKBACK
    assert lookback(Settings(environ={"LHPIPE_LH_OUTPUT_LOOKBACK": "0"})) == 0
    with pytest.raises(PipelineNotRunnable, match="LHPIPE_LH_OUTPUT_LOOKBACK"):
        lookback(Settings(environ={"LHPIPE_LH_OUTPUT_LOOKBACK": "-3"}))


def test_the_replay_hooks_into_the_kafka_source_assignment_callback() -> None:
    from lhpipe.clients.kafka.consumer import KafkaSource

    # OutputTopicSource extends KafkaSource's own callback; a rename there would skip the replay.
    assert "_on_assign" in vars(KafkaSource)
    assert OutputTopicSource._on_assign is not KafkaSource._on_assign
