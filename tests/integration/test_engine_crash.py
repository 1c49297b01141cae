"""`kill -9` of lhpipe while 5,000 records flow, then a restart: exactly 5,000 WfRuns.

The first process runs with few requests in flight so that the kill lands mid-stream; what it
had sent but not committed is sent again by the second process under the same WfRun ids, and
LittleHorse answers ALREADY_EXISTS for those.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from engine_run import (
    LhpipeRun,
    committed,
    create_topic,
    produce,
    settled_wf_run_count,
    unique,
    wait_until,
    write_pipelines,
)
from lh import lh_config, register_wf_spec
from littlehorse.workflow import Workflow, WorkflowThread

from lhpipe.stack.addresses import StackAddresses

pytestmark = pytest.mark.integration

RECORDS = 5_000
PARTITIONS = 3


def test_a_killed_process_restarted_makes_exactly_one_wf_run_per_record(
    stack: StackAddresses, tmp_path: Path
) -> None:
    config = lh_config(stack)
    wf_name, topic, group = unique("e3-crash"), unique("e3-crash-in"), unique("e3-crash-g")

    def flow(wf: WorkflowThread) -> None:
        wf.declare_int("n")

    register_wf_spec(config, Workflow(wf_name, flow))
    create_topic(stack, topic, partitions=PARTITIONS)
    # WfRun ids are global in LittleHorse: unique per run, or a rerun would find them taken.
    run_tag = unique("run")
    folder = write_pipelines(
        tmp_path / "pipelines",
        f"""
pipeline crash {{
  from topic "{topic}" {{ value = json  group = "{group}" }}
  run_wf "{wf_name}" {{ id = "c-{run_tag}-${{key}}" }}
}}
""",
    )
    produce(
        stack,
        topic,
        ((str(n).encode(), json.dumps({"n": n}).encode(), []) for n in range(RECORDS)),
    )

    first = LhpipeRun(folder, env={"LHPIPE_MAX_IN_FLIGHT": "4"})
    with first:
        first.wait_ready()
        acknowledged = wait_until(
            lambda: (n := first.stats("crash")["acknowledged"]) >= 500 and n, 90, "500 records"
        )
        first.kill()
    assert acknowledged < RECORDS, "the kill must land while records flow"
    assert sum(committed(stack, group, topic, PARTITIONS)) < RECORDS

    with LhpipeRun(folder) as second:
        second.wait_ready()
        wait_until(
            lambda: sum(committed(stack, group, topic, PARTITIONS)) == RECORDS,
            180,
            "every offset to be committed",
            every=1.0,
        )
        assert second.terminate() == 0, second.log()
    assert settled_wf_run_count(config, wf_name, RECORDS) == RECORDS
