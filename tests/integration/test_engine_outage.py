"""LittleHorse stopped for 20 s mid-stream, then started again: no loss, no duplicate, nothing in
the dead-letter topic, and `/readyz` reports the outage while it lasts.

This test stops a service of the shared stack: it restarts it in a `finally`, whatever happens.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from engine_run import (
    LhpipeRun,
    committed,
    create_topic,
    produce,
    read_all,
    settled_wf_run_count,
    unique,
    wait_until,
    write_pipelines,
)
from lh import lh_config, register_wf_spec
from littlehorse.workflow import Workflow, WorkflowThread

from lhpipe.stack import control
from lhpipe.stack.addresses import StackAddresses

pytestmark = pytest.mark.integration

BEFORE, DURING = 600, 400
PARTITIONS = 3
OUTAGE_SECONDS = 20.0


def test_a_littlehorse_outage_loses_nothing_duplicates_nothing_and_shows_in_readyz(
    stack: StackAddresses, tmp_path: Path
) -> None:
    config = lh_config(stack)
    wf_name, topic, group = unique("e3-outage"), unique("e3-outage-in"), unique("e3-outage-g")
    dlq = unique("e3-outage-dlq")

    def flow(wf: WorkflowThread) -> None:
        wf.declare_int("n")

    register_wf_spec(config, Workflow(wf_name, flow))
    create_topic(stack, topic, partitions=PARTITIONS)
    # WfRun ids are global in LittleHorse: unique per run, or a rerun would find them taken.
    run_tag = unique("run")
    folder = write_pipelines(
        tmp_path / "pipelines",
        f"""
pipeline outage {{
  from topic "{topic}" {{ value = json  group = "{group}" }}
  run_wf "{wf_name}" {{ id = "o-{run_tag}-${{key}}" }}
  on_error {{ dead_letter = "{dlq}" }}
}}
""",
    )
    total = BEFORE + DURING
    produce(
        stack, topic, ((str(n).encode(), json.dumps({"n": n}).encode(), []) for n in range(BEFORE))
    )

    with LhpipeRun(folder, env={"LHPIPE_MAX_IN_FLIGHT": "8"}) as run:
        run.wait_ready()
        wait_until(lambda: run.stats("outage")["acknowledged"] >= 100, 60, "100 records done")
        outage_views: list[tuple[int, dict[str, object]]] = []

        def reported() -> bool:
            answer = run.readyz()
            if answer is not None:
                outage_views.append((answer[0], answer[1]["pipelines"]["outage"]))
            return answer is not None and f"run_wf:{wf_name}" in str(outage_views[-1][1]["detail"])

        try:
            control.stop_service("littlehorse")
            stopped = time.monotonic()
            produce(
                stack,
                topic,
                (
                    (str(n).encode(), json.dumps({"n": n}).encode(), [])
                    for n in range(BEFORE, total)
                ),
            )
            wait_until(reported, 120, "/readyz to report LittleHorse down", every=1.0)
            reported_from = len(outage_views) - 1
            while time.monotonic() - stopped < OUTAGE_SECONDS:  # the outage goes on
                reported()
                time.sleep(1.0)
        finally:
            print(control.start_service("littlehorse"))

        # While LittleHorse was down /readyz said so, with the reason, from the first time it
        # did to the end of the outage.
        late = outage_views[reported_from:]
        assert all(status == 503 for status, _ in late), outage_views
        assert all(not view["ready"] for _, view in late)

        wait_until(
            lambda: sum(committed(stack, group, topic, PARTITIONS)) == total,
            240,
            "every offset to be committed after the outage",
            every=1.0,
        )
        wait_until(lambda: (r := run.readyz()) is not None and r[0] == 200, 60, "ready again")
        assert run.terminate() == 0, run.log()

    assert settled_wf_run_count(config, wf_name, total) == total
    assert read_all(stack, dlq, expected=0) == []
