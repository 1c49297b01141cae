"""Several `lhpipe run` processes on the same files, in one consumer group (docs/scaling.md).

Each test runs real processes against the local stack and counts what arrived: a process
joining while the others hold back for a slow target, a `kill -9` with a short session
timeout, a rolling restart under steady traffic, and the singletons (`from poll`, connector
management) owned by one process at a time.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from confluent_kafka import Producer
from engine_run import (
    LhpipeRun,
    create_topic,
    poll_state,
    poll_states_end,
    produce,
    settled_wf_run_count,
    unique,
    wait_until,
    write_pipelines,
)
from lh import lh_config, register_wf_spec, run_wf
from littlehorse.workflow import Workflow, WorkflowThread
from scale_support import Endpoint, GroupOffsets, serve, state_of, wait_running

from lhpipe.clients.kafka.consumer import HOLD_BEFORE_PAUSE_SECONDS
from lhpipe.stack.addresses import StackAddresses

pytestmark = pytest.mark.integration

RECORDS = 6_000
PARTITIONS = 6
IN_FLIGHT = 16
SESSION_TIMEOUT_MS = 6_000


@pytest.fixture
def endpoint() -> Iterator[Endpoint]:
    yield from serve(Endpoint())


def _records(count: int, start: int = 0) -> Iterator[tuple[bytes, bytes, list[tuple[str, bytes]]]]:
    for n in range(start, start + count):
        yield str(n).encode(), json.dumps({"id": f"r{n}", "n": n}).encode(), []


def _to_http_program(topic: str, group: str, url: str) -> str:
    return f"""
pipeline spread {{
  from topic "{topic}" {{ value = json  group = "{group}" }}
  to http "{url}/sink" {{ body = value }}
}}
"""


def _env(**extra: str) -> dict[str, str]:
    return {"LHPIPE_MAX_IN_FLIGHT": str(IN_FLIGHT), **extra}


def test_a_process_joining_while_the_others_hold_for_a_slow_target_stalls_nothing(
    stack: StackAddresses, tmp_path: Path, endpoint: Endpoint
) -> None:
    topic, group = unique("so-join"), unique("so-join-g")
    create_topic(stack, topic, partitions=PARTITIONS)
    produce(stack, topic, _records(RECORDS))
    folder = write_pipelines(tmp_path / "p", _to_http_program(topic, group, endpoint.url))
    offsets = GroupOffsets(stack, group, topic, PARTITIONS)
    endpoint.open.clear()  # the target holds every request back
    runs = [LhpipeRun(folder, env=_env()) for _ in range(2)]
    try:
        for run in runs:
            wait_running(run, "spread")
        # Both fill their buffers and, after 5 s without room, pause their partitions.
        wait_until(
            lambda: all(
                (state_of(r, "spread") or {}).get("stats", {}).get("buffered", 0) >= 900
                for r in runs
            ),
            60,
            "both buffers to fill",
        )
        time.sleep(HOLD_BEFORE_PAUSE_SECONDS + 1)
        for run in runs:
            buffered = state_of(run, "spread")["stats"]["buffered"]  # type: ignore[index]
            assert buffered <= 1000, f"the buffer bound is 1,000 records, {buffered} held"
        # A third process joins: a rebalance while the partitions are paused.
        runs.append(LhpipeRun(folder, env=_env()))
        wait_running(runs[2], "spread")
        wait_until(
            lambda: (state_of(runs[2], "spread") or {}).get("stats", {}).get("read", 0) > 0,
            60,
            "the new process to read",
        )
        time.sleep(2)
        endpoint.open.set()
        wait_until(
            lambda: sum(offsets.committed()) == RECORDS, 180, "every offset committed", every=1.0
        )
        assert endpoint.distinct() == RECORDS
        assert endpoint.duplicates() <= len(runs) * IN_FLIGHT, endpoint.duplicates()
        for run in runs:
            assert run.terminate() == 0, run.log()
    finally:
        for run in runs:
            run.__exit__()
        offsets.close()


def test_kill_9_of_one_of_three_moves_its_partitions_to_the_survivors(
    stack: StackAddresses, tmp_path: Path
) -> None:
    config = lh_config(stack)
    wf_name, topic, group = unique("so-kill"), unique("so-kill-in"), unique("so-kill-g")

    def flow(wf: WorkflowThread) -> None:
        wf.declare_str("id")
        wf.declare_int("n")

    register_wf_spec(config, Workflow(wf_name, flow))
    create_topic(stack, topic, partitions=PARTITIONS)
    tag = unique("k")
    folder = write_pipelines(
        tmp_path / "p",
        f"""
pipeline kill {{
  from topic "{topic}" {{ value = json  group = "{group}" }}
  run_wf "{wf_name}" {{ id = "{tag}-${{key}}" }}
}}
""",
    )
    produce(stack, topic, _records(RECORDS))
    offsets = GroupOffsets(stack, group, topic, PARTITIONS)
    env = {"LHPIPE_MAX_IN_FLIGHT": "2", "LHPIPE_SESSION_TIMEOUT_MS": str(SESSION_TIMEOUT_MS)}
    runs = [LhpipeRun(folder, env=env) for _ in range(3)]
    try:
        for run in runs:
            run.wait_ready()
        wait_until(
            lambda: all(run.stats("kill")["acknowledged"] > 50 for run in runs),
            120,
            "every process to deliver",
        )
        runs[1].kill()
        at_kill = offsets.committed()
        ends = offsets.ends()
        assert sum(at_kill) < RECORDS, "the kill must land while records flow"
        # Every partition with records left commits again, the dead process's ones too: the
        # survivors were given them once its session timed out.
        behind = [p for p in range(PARTITIONS) if at_kill[p] < ends[p]]
        wait_until(
            lambda: all(offsets.committed()[p] > at_kill[p] for p in behind),
            180,
            "every partition with records left to move again",
            every=0.5,
        )
        wait_until(
            lambda: sum(offsets.committed()) == RECORDS, 240, "every offset committed", every=1.0
        )
        for run in (runs[0], runs[2]):
            assert run.terminate() == 0, run.log()
    finally:
        for run in runs:
            run.__exit__()
        offsets.close()
    assert settled_wf_run_count(config, wf_name, RECORDS) == RECORDS


def test_a_rolling_restart_under_steady_traffic_loses_nothing(
    stack: StackAddresses, tmp_path: Path, endpoint: Endpoint
) -> None:
    topic, group = unique("so-roll"), unique("so-roll-g")
    create_topic(stack, topic, partitions=PARTITIONS)
    folder = write_pipelines(tmp_path / "p", _to_http_program(topic, group, endpoint.url))
    offsets = GroupOffsets(stack, group, topic, PARTITIONS)
    produced = 0
    stop = threading.Event()

    def traffic() -> None:
        nonlocal produced
        producer = Producer({"bootstrap.servers": stack.kafka_bootstrap, "linger.ms": 5})
        while not stop.is_set() and produced < 20_000:
            for key, value, _ in _records(20, produced):
                producer.produce(topic, value=value, key=key)
            produced += 20
            producer.poll(0)
            time.sleep(0.05)  # about 400 records/s
        producer.flush(30)

    def delivering(run: LhpipeRun) -> bool:
        return bool(run.stats("spread")["acknowledged"])

    runs = [LhpipeRun(folder, env=_env()) for _ in range(3)]
    producer_thread = threading.Thread(target=traffic, daemon=True)
    try:
        for run in runs:
            run.wait_ready()
        producer_thread.start()
        wait_until(lambda: all(map(delivering, runs)), 60, "every process to deliver")
        for i in range(3):
            assert runs[i].terminate() == 0, runs[i].log()
            runs[i] = LhpipeRun(folder, env=_env())
            runs[i].wait_ready()
            # Each new process takes its share of the work before the next one leaves.
            wait_until(lambda i=i: delivering(runs[i]), 60, f"the new process {i} to deliver")
        stop.set()
        producer_thread.join(60)
        wait_until(
            lambda: sum(offsets.committed()) == produced, 120, "every offset committed", every=1.0
        )
        assert endpoint.distinct() == produced
        assert endpoint.duplicates() <= 3 * IN_FLIGHT, endpoint.duplicates()
        for run in runs:
            assert run.terminate() == 0, run.log()
    finally:
        stop.set()
        for run in runs:
            run.__exit__()
        offsets.close()


POLL_ITEMS = 400
POLL_PAGE = 20
POLL_GATE = 200


def test_two_processes_poll_once_and_the_survivor_takes_over_from_the_saved_cursor(
    stack: StackAddresses, tmp_path: Path
) -> None:
    pipeline = f"poll_{unique('so')[3:].replace('-', '_')}"
    states_start = poll_states_end(stack)
    feed_server = Endpoint(items=POLL_ITEMS, page=POLL_PAGE, gate_after=POLL_GATE)
    feed = serve(feed_server)
    endpoint = next(feed)
    folder = write_pipelines(
        tmp_path / "p",
        f"""
pipeline {pipeline} {{
  from poll "{endpoint.url}/items?after=${{cursor}}" {{
    every = 1s
    items = response.items
    cursor = response.next
    id = item.id
  }}
  to http "{endpoint.url}/sink" {{ body = value }}
}}
""",
    )
    env = _env(LHPIPE_SESSION_TIMEOUT_MS=str(SESSION_TIMEOUT_MS))
    runs = [LhpipeRun(folder, env=env) for _ in range(2)]
    try:
        states = [wait_running(run, pipeline)["state"] for run in runs]

        def roles() -> list[str] | None:
            found = [(state_of(run, pipeline) or {}).get("state", "") for run in runs]
            return found if sorted(found) == ["running", "standby"] else None

        states = wait_until(roles, 60, "one poller and one standing by")
        owner = runs[states.index("running")]
        standby = runs[states.index("standby")]
        assert "owns it" in (state_of(standby, pipeline) or {}).get("detail", "")
        wait_until(lambda: endpoint.distinct() >= POLL_GATE, 60, "the items before the gate")
        # The owner wrote the state of the pages before the gate: a process standing by that
        # polled as well would have sent items twice by now.
        wait_until(
            lambda: (
                (state := poll_state(stack, pipeline, states_start))
                and state["cursor"] == str(POLL_GATE)
            ),
            60,
            "the state of the pages before the gate",
        )
        assert endpoint.duplicates() == 0, "one process polls"
        asked_before = len(endpoint.asked)  # the owner's last ask waits at the gate
        owner.kill()
        endpoint.feed_gate.set()
        wait_until(lambda: len(endpoint.asked) > asked_before, 120, "the other process to poll")
        # It polls on from the saved cursor.
        first_after = endpoint.asked[asked_before]
        assert int(first_after or 0) >= POLL_GATE - POLL_PAGE, first_after
        wait_until(lambda: endpoint.distinct() == POLL_ITEMS, 90, "every item sent")
        assert endpoint.duplicates() <= IN_FLIGHT, endpoint.duplicates()
        assert (state_of(standby, pipeline) or {}).get("state") == "running"
        assert standby.terminate() == 0, standby.log()
    finally:
        for run in runs:
            run.__exit__()
        with contextlib.suppress(StopIteration):
            next(feed)


def _file_connector(name: str, topic: str, path: Path) -> str:
    return f"""
connector {name} {{
  class = "FileStreamSource"
  topic = "{topic}"
  config {{ file = "{path}" }}
}}
"""


def test_connectors_are_managed_by_one_process_and_the_newest_program_wins_once(
    connect: StackAddresses, tmp_path: Path
) -> None:
    owner_marker = unique("so-owner")
    first, second = unique("so_a").replace("-", "_"), unique("so_b").replace("-", "_")
    source = tmp_path / "lines.txt"
    source.write_text("one\n")
    a = write_pipelines(tmp_path / "a", _file_connector(first, unique("so-ct"), source))
    b = write_pipelines(tmp_path / "b", _file_connector(second, unique("so-ct"), source))
    env = {"LHPIPE_CONNECT_OWNER": owner_marker, "LHPIPE_SESSION_TIMEOUT_MS": "6000"}
    run_a = LhpipeRun(a, env=env)
    run_b: LhpipeRun | None = None
    try:
        run_a.wait_ready()
        assert connector_names(connect, owner_marker) == {first}
        # A newer program joins (a rolling deploy): it takes the management over, once.
        run_b = LhpipeRun(b, env=env)
        wait_until(
            lambda: connector_names(connect, owner_marker) == {second}, 60, "the newer program"
        )
        run_b.wait_ready()
        standing = state_of(run_a, f"connector:{first}") or {}
        assert standing.get("state") == "standby", standing
        assert "newer program" in standing.get("detail", ""), standing
        wait_for_rounds([run_a, run_b])  # nothing flaps
        assert connector_names(connect, owner_marker) == {second}
        # The old program's process stops: nothing changes any more.
        assert run_a.terminate() == 0, run_a.log()
        wait_for_rounds([run_b])
        assert connector_names(connect, owner_marker) == {second}
        log_a, log_b = run_a.log(), run_b.log()
        assert log_a.count(f"connector {first}: created") == 1, log_a
        assert f"connector {second}" not in log_a, log_a
        assert log_b.count(f"connector {second}: created") == 1, log_b
        assert log_b.count(f"connector {first}: removed") == 1, log_b
        assert "config updated" not in log_a + log_b
        assert run_b.terminate() == 0, run_b.log()
    finally:
        run_a.__exit__()
        if run_b is not None:
            run_b.__exit__()
        for name in (first, second):
            httpx.delete(f"{connect.connect_url}/connectors/{name}", timeout=10)


def wait_for_rounds(runs: list[LhpipeRun], more: int = 2) -> None:
    """Until each process has done ``more`` background rounds of its connector manager (each
    reads the cluster and acts on what it finds)."""
    rounds = "lhpipe_connector_rounds_total"
    wanted = [run.metric(rounds) + more for run in runs]
    wait_until(
        lambda: all(run.metric(rounds) >= n for run, n in zip(runs, wanted, strict=True)),
        60,
        f"{more} connector rounds of each process",
    )


def connector_names(stack: StackAddresses, owner_marker: str) -> set[str]:
    """The connectors on the worker that carry ``owner_marker``."""
    answer = httpx.get(f"{stack.connect_url}/connectors?expand=info", timeout=10)
    answer.raise_for_status()
    return {
        name
        for name, entry in answer.json().items()
        if entry["info"]["config"].get("lhpipe.owner") == owner_marker
    }


def test_lh_output_in_two_processes_handles_each_event_once_and_keeps_its_partitions(
    stack: StackAddresses, tmp_path: Path, endpoint: Endpoint
) -> None:
    config = lh_config(stack)

    def entrypoint(wf: WorkflowThread) -> None:
        wf.declare_str("applicant").required().as_public()

    wf_spec = register_wf_spec(config, Workflow(unique("so-lhout"), entrypoint))
    group = unique("so-lhout-g")
    offsets = GroupOffsets(stack, group, stack.execution_output_topic)
    folder = write_pipelines(
        tmp_path / "p",
        f"""
pipeline exports {{
  from lh_output {{ kinds = [wf_run]  wf_spec = "{wf_spec.id.name}"  group = "{group}" }}
  where event.status == "COMPLETED"
  to http "{endpoint.url}/sink" {{
    body = {{ id = event.wf_run_id  applicant = event.variables.applicant }}
  }}
}}
""",
    )
    first = LhpipeRun(folder, env=_env())
    second: LhpipeRun | None = None
    try:
        first.wait_ready()
        started = [run_wf(config, wf_spec, applicant=f"a{n}") for n in range(20)]
        wait_until(lambda: endpoint.distinct() == len(started), 120, "the first 20 events")
        offsets.wait_committed_to_the_end()
        second = LhpipeRun(folder, env=_env())
        second.wait_ready()
        wait_until(
            lambda: (
                '"pipeline exports: assigned ' in second.log()  # type: ignore[union-attr]
                and "assigned nothing" not in second.log().splitlines()[-1]
            ),  # type: ignore[union-attr]
            60,
            "the second process to be given partitions",
        )
        started += [run_wf(config, wf_spec, applicant=f"b{n}") for n in range(20)]
        wait_until(lambda: endpoint.distinct() == len(started), 120, "the next 20 events")
        offsets.wait_committed_to_the_end()  # any event sent twice would have been by now
        assert endpoint.distinct() == len(started) == 40
        assert endpoint.duplicates() == 0
        # The first process kept its partitions through the join: no look-back replay there.
        assert "replayed" not in first.log(), first.log()
        assert second.terminate() == 0, second.log()
        assert first.terminate() == 0, first.log()
    finally:
        first.__exit__()
        if second is not None:
            second.__exit__()
        offsets.close()
