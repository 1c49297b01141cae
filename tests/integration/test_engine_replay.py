"""`lhpipe run` end to end: Kafka records become WfRuns and ExternalEvents in LittleHorse, read
back from it; the group's offsets are committed on a clean shutdown; and a replay from the
earliest offset creates no second WfRun and no second event."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from engine_run import (
    LhpipeRun,
    committed,
    create_topic,
    external_events_of,
    produce,
    read_all,
    reset_to_earliest,
    settled_wf_run_count,
    unique,
    wait_until,
    write_pipelines,
)
from lh import lh_config, register_external_event_def, register_wf_spec, variable_value
from littlehorse.model import VariableType
from littlehorse.workflow import Workflow, WorkflowThread

from lhpipe.stack.addresses import StackAddresses

pytestmark = pytest.mark.integration

RECORDS = 40


def test_records_become_wf_runs_and_events_and_a_replay_creates_nothing_new(
    stack: StackAddresses, tmp_path: Path
) -> None:
    config = lh_config(stack)
    wf_name, event_name = unique("e3-order"), unique("e3-note")
    orders, notes, dlq = unique("e3-orders"), unique("e3-notes"), unique("e3-dlq")
    orders_group, notes_group = unique("e3-g-orders"), unique("e3-g-notes")
    register_external_event_def(config, event_name, payload_type=VariableType.STR)

    def order_flow(wf: WorkflowThread) -> None:
        wf.declare_str("name")
        wf.declare_int("amount")
        wf.wait_for_event(event_name)

    register_wf_spec(config, Workflow(wf_name, order_flow))
    create_topic(stack, orders, partitions=3)
    create_topic(stack, notes)
    folder = write_pipelines(
        tmp_path / "pipelines",
        f"""
pipeline orders {{
  from topic "{orders}" {{ value = json  group = "{orders_group}" }}
  run_wf "{wf_name}" {{ variables {{ name = value.name  amount = value.amount }} }}
  on_error {{ dead_letter = "{dlq}" }}
}}

pipeline notes {{
  from topic "{notes}" {{ value = json  group = "{notes_group}" }}
  post_event "{event_name}" {{ content = value.note }}
  on_error {{ dead_letter = "{dlq}" }}
}}
""",
    )
    # WfRun ids are global in LittleHorse: unique per run, or a rerun would find them taken.
    run_tag = unique("run")
    ids = [f"order-{run_tag}-{n}" for n in range(RECORDS)]
    produce(
        stack,
        orders,
        (
            (wf_id.encode(), json.dumps({"name": f"n{n}", "amount": n}).encode(), [])
            for n, wf_id in enumerate(ids)
        ),
    )
    # Two notes per WfRun: the first completes its wait, the second is stored pre-emptively.
    produce(
        stack,
        notes,
        (
            (wf_id.encode(), json.dumps({"note": f"{wf_id}/{k}"}).encode(), [])
            for k in range(2)
            for wf_id in ids
        ),
    )

    def run_once() -> dict[str, float]:
        """Runs lhpipe until every record is done; returns how many of them LittleHorse
        answered ALREADY_EXISTS, per pipeline."""
        with LhpipeRun(folder) as run:
            run.wait_ready()
            wait_until(
                lambda: (
                    run.stats("orders")["acknowledged"] == RECORDS
                    and run.stats("notes")["acknowledged"] == 2 * RECORDS
                ),
                90,
                "every record to be acknowledged",
            )
            already = {
                name: run.metric("lhpipe_lh_already_exists_total", pipeline=name)
                for name in ("orders", "notes")
            }
            assert run.terminate() == 0, run.log()
        assert sum(committed(stack, orders_group, orders, 3)) == RECORDS
        assert committed(stack, notes_group, notes) == [2 * RECORDS]
        return already

    assert run_once() == {"orders": 0, "notes": 0}
    assert settled_wf_run_count(config, wf_name, RECORDS) == RECORDS
    assert variable_value(config, ids[7], "name") == "n7"
    assert variable_value(config, ids[7], "amount") == 7
    assert len(external_events_of(config, ids[7]).results) == 2

    reset_to_earliest(stack, orders_group, orders, 3)
    reset_to_earliest(stack, notes_group, notes)
    # LittleHorse had every WfRun and every event already.
    assert run_once() == {"orders": RECORDS, "notes": 2 * RECORDS}
    assert settled_wf_run_count(config, wf_name, RECORDS) == RECORDS
    for wf_id in ids:
        events = external_events_of(config, wf_id).results
        assert sorted(e.content.str for e in events) == [f"{wf_id}/0", f"{wf_id}/1"]
    assert read_all(stack, dlq, expected=0) == []
