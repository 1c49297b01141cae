"""`lhpipe run` end to end, target by target: Kafka records in, the right LittleHorse objects
out, read back from LittleHorse. WfRun ids from the key, the ``wfRunId`` header and generated;
variables of every type from a JSON value; a child WfRun through ``parent``; an external event
posted before its WfRun exists; first-write-wins correlation with nothing dead-lettered.

One ``lhpipe run`` process serves every pipeline of the module. WfRun ids are global in
LittleHorse, so every id, name and topic carries a token of this run.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import grpc
import pytest
from engine_run import LhpipeRun, create_topic, produce, read_all, wait_until, write_pipelines
from lh import (
    correlated_event,
    lh_config,
    register_external_event_def,
    register_wf_spec,
    run_wf,
    variable_value,
    wait_for_status,
    wait_until_visible,
)
from littlehorse.config import LHConfig
from littlehorse.model import LHStatus, WfRunId, WfSpec
from littlehorse.workflow import Workflow, WorkflowThread

from lhpipe.stack.addresses import StackAddresses

pytestmark = pytest.mark.integration

ACK_TIMEOUT_SECONDS = 60.0
EVERY_TYPE = {
    "s": "declare_str",
    "i": "declare_int",
    "d": "declare_double",
    "b": "declare_bool",
    "o": "declare_json_obj",
    "a": "declare_json_arr",
    "ts": "declare_timestamp",
    "unset": "declare_str",
}


@dataclass(frozen=True)
class Targets:
    """The running ``lhpipe run`` and what its pipelines read and write."""

    stack: StackAddresses
    config: LHConfig
    run: LhpipeRun
    token: str
    topics: dict[str, str]  # pipeline name -> the topic it reads
    dlq: str
    early_event: str
    paid_event: str
    child_spec: str
    await_paid_spec: WfSpec

    def send(self, pipeline: str, *records: tuple[str | None, Any, dict[str, str]]) -> None:
        """Produce (key, JSON value, headers) records to ``pipeline``'s topic and wait until
        the pipeline has acknowledged them all."""
        before = self.run.stats(pipeline)["acknowledged"]
        produce(
            self.stack,
            self.topics[pipeline],
            (
                (
                    None if key is None else key.encode(),
                    json.dumps(value).encode(),
                    [(name, text.encode()) for name, text in headers.items()],
                )
                for key, value, headers in records
            ),
        )
        wait_until(
            lambda: self.run.stats(pipeline)["acknowledged"] == before + len(records),
            ACK_TIMEOUT_SECONDS,
            f"{pipeline} to acknowledge {len(records)} record(s)\n{self.run.log()}",
        )

    def wf_run_id(self, name: str) -> str:
        return f"{name}-{self.token}"


@pytest.fixture(scope="module")
def targets(stack: StackAddresses, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Targets]:
    config = lh_config(stack)
    token = uuid.uuid4().hex[:10]
    early_event, paid_event = f"e9-early-{token}", f"e9-paid-{token}"
    register_external_event_def(config, early_event)
    register_external_event_def(config, paid_event, correlated=True)

    def plain(wf: WorkflowThread) -> None:
        wf.declare_str("note")

    def every_type(wf: WorkflowThread) -> None:
        for name, declare in EVERY_TYPE.items():
            getattr(wf, declare)(name)

    def waits_early(wf: WorkflowThread) -> None:
        wf.declare_str("got").assign(wf.wait_for_event(early_event))

    def await_paid(wf: WorkflowThread) -> None:
        order = wf.declare_str("order").required()
        wf.declare_str("receipt").assign(wf.wait_for_event(paid_event, correlation_id=order))

    plain_spec = register_wf_spec(config, Workflow(f"e9-plain-{token}", plain)).id.name
    every_spec = register_wf_spec(config, Workflow(f"e9-every-{token}", every_type)).id.name
    early_spec = register_wf_spec(config, Workflow(f"e9-waits-{token}", waits_early)).id.name
    child_spec = register_wf_spec(
        config, Workflow(f"e9-child-{token}", plain, parent_wf=early_spec)
    ).id.name
    paid_spec = register_wf_spec(config, Workflow(f"e9-await-{token}", await_paid))

    # Pipeline names with `_` and a topic with `.` show the generated id's normalisation.
    pipelines = {
        "ids": (f"ids_{token}", f"e9.ids.{token}", f'run_wf "{plain_spec}"'),
        "every": (f"every_{token}", f"e9-every-{token}", f'run_wf "{every_spec}"'),
        "child": (
            f"child_{token}",
            f"e9-child-{token}",
            f'run_wf "{child_spec}" {{ parent = value.parent_id  variables {{ }} }}',
        ),
        "early": (
            f"early_{token}",
            f"e9-early-{token}",
            f'post_event "{early_event}" {{ content = value.note }}',
        ),
        "start": (f"start_{token}", f"e9-start-{token}", f'run_wf "{early_spec}"'),
        "paid": (
            f"paid_{token}",
            f"e9-paid-{token}",
            f'correlate "{paid_event}" {{ content = value.receipt }}',
        ),
    }
    dlq = f"e9-dlq-{token}"
    for _, topic, _ in pipelines.values():
        create_topic(stack, topic)
    create_topic(stack, dlq)
    text = "".join(
        f"""
pipeline {name} {{
  from topic "{topic}" {{ value = json  group = "e9-{name}" }}
  {target}
  on_error {{ dead_letter = "{dlq}" }}
}}
"""
        for name, topic, target in pipelines.values()
    )
    folder = write_pipelines(tmp_path_factory.mktemp("e9") / "pipelines", text)
    with LhpipeRun(folder) as run:
        run.wait_ready()
        yield Targets(
            stack=stack,
            config=config,
            run=run,
            token=token,
            topics={name: topic for name, topic, _ in pipelines.values()},
            dlq=dlq,
            early_event=early_event,
            paid_event=paid_event,
            child_spec=child_spec,
            await_paid_spec=paid_spec,
        )
        assert run.terminate() == 0, run.log()
    # Every record of every case reached LittleHorse: none was dead-lettered.
    assert read_all(stack, dlq, expected=0) == []


def pipeline(targets: Targets, case: str) -> str:
    return f"{case}_{targets.token}"


def test_run_wf_ids_come_from_the_key_the_header_or_are_generated(targets: Targets) -> None:
    config, token = targets.config, targets.token
    keyed, header, beaten_key = (targets.wf_run_id(n) for n in ("Keyed", "hdr", "beaten"))
    ids = pipeline(targets, "ids")

    targets.send(
        ids,
        (keyed, {"note": "by key"}, {}),
        (beaten_key, {"note": "by header"}, {"wfRunId": header}),
        (None, {"note": "generated"}, {}),
    )

    # The key and header keep their case; only a generated id is normalised.
    generated = f"ids-{token}-e9-ids-{token}-0-2"
    for wf_run_id, note in ((keyed, "by key"), (header, "by header"), (generated, "generated")):
        wait_for_status(config, wf_run_id, LHStatus.COMPLETED)
        assert variable_value(config, wf_run_id, "note") == note
    with pytest.raises(grpc.RpcError) as missing:
        config.stub().GetWfRun(WfRunId(id=beaten_key))
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND


def test_top_level_fields_become_variables_of_every_type(targets: Targets) -> None:
    config = targets.config
    wf_run_id = targets.wf_run_id("every")

    targets.send(
        pipeline(targets, "every"),
        (
            wf_run_id,
            {
                "s": "Ann",
                "i": 42,
                "d": 1.5,
                "b": True,
                "o": {"tags": ["a"], "n": None},
                "a": [1, "two"],
                "ts": "2024-05-01T12:00:00+02:00",
                "unset": None,
            },
            {},
        ),
    )

    wait_for_status(config, wf_run_id, LHStatus.COMPLETED)
    assert {name: variable_value(config, wf_run_id, name) for name in EVERY_TYPE} == {
        "s": "Ann",
        "i": 42,
        "d": 1.5,
        "b": True,
        "o": {"tags": ["a"], "n": None},
        "a": [1, "two"],
        "ts": datetime(2024, 5, 1, 10, 0),
        "unset": None,
    }


def test_a_child_wf_run_is_started_under_its_parent_id(targets: Targets) -> None:
    config = targets.config
    parent_id = targets.wf_run_id("parent")
    child_id = targets.wf_run_id("child")
    # The parent waits for an event that never comes, so it is running while its child starts.
    targets.send(pipeline(targets, "start"), (parent_id, {}, {}))
    wait_for_status(config, parent_id, LHStatus.RUNNING)

    targets.send(pipeline(targets, "child"), (child_id, {"parent_id": parent_id}, {}))

    child = wait_until_visible(
        lambda: config.stub().GetWfRun(
            WfRunId(id=child_id, parent_wf_run_id=WfRunId(id=parent_id))
        ),
        f"child WfRun {child_id}",
    )
    assert child.wf_spec_id.name == targets.child_spec
    with pytest.raises(grpc.RpcError) as orphan:
        config.stub().GetWfRun(WfRunId(id=child_id))
    assert orphan.value.code() == grpc.StatusCode.NOT_FOUND


def test_an_event_posted_before_its_wf_run_exists_is_consumed_when_it_starts(
    targets: Targets,
) -> None:
    config = targets.config
    wf_run_id = targets.wf_run_id("early")

    targets.send(pipeline(targets, "early"), (wf_run_id, {"note": "approved"}, {}))
    with pytest.raises(grpc.RpcError) as not_yet:
        config.stub().GetWfRun(WfRunId(id=wf_run_id))
    assert not_yet.value.code() == grpc.StatusCode.NOT_FOUND
    targets.send(pipeline(targets, "start"), (wf_run_id, {}, {}))

    wait_for_status(config, wf_run_id, LHStatus.COMPLETED)
    assert variable_value(config, wf_run_id, "got") == "approved"


def test_correlation_is_first_write_wins_and_the_second_is_no_error(targets: Targets) -> None:
    config = targets.config
    order = targets.wf_run_id("order")

    # The correlation key defaults to the record key; one key keeps the two records in order.
    targets.send(
        pipeline(targets, "paid"),
        (order, {"receipt": "paid 10 EUR"}, {}),
        (order, {"receipt": "paid 99 EUR"}, {}),
    )
    assert correlated_event(config, order, targets.paid_event) == "paid 10 EUR"
    assert read_all(targets.stack, targets.dlq, expected=0) == []

    # The correlated WfRun starts after both events: it must find the first one.
    wf_run_id = run_wf(config, targets.await_paid_spec, order=order)
    wait_for_status(config, wf_run_id, LHStatus.COMPLETED)
    assert variable_value(config, wf_run_id, "receipt") == "paid 10 EUR"
