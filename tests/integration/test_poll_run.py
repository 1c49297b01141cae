"""`from poll` end to end: a local HTTP server pages through 1,000 items with a cursor; `lhpipe
run` polls them into WfRuns, is killed with SIGKILL midway, restarts from the state it wrote
to Kafka (the cursor, and the ids done on the page after it), and LittleHorse ends up with
exactly 1,000 WfRuns.

The WfRun ids are the generated ones (`<pipeline>-<item id>`), so this also shows that they
are the same in both processes: the items the first process had sent but not yet committed
are sent again by the second and answered ALREADY_EXISTS.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
from engine_run import (
    LhpipeRun,
    poll_state,
    poll_states_end,
    settled_wf_run_count,
    unique,
    wait_until,
    write_pipelines,
)
from lh import lh_config, register_wf_spec
from littlehorse.workflow import Workflow, WorkflowThread

from lhpipe.stack.addresses import StackAddresses

pytestmark = pytest.mark.integration

ITEMS = 1_000
PAGE = 25
#: Pages after this item wait until the feed's ``gate`` opens: the first process is killed
#: with items still to do, however fast the machine.
GATE_AFTER = 600


class Feed(ThreadingHTTPServer):
    """``GET /items?after=N``: items N+1.. (``PAGE`` of them), ``next`` the last one's number
    (null once there are no more). Every ``after`` asked is recorded."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _FeedHandler)
        self.asked: list[str] = []
        self.lock = threading.Lock()
        self.gate = threading.Event()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _FeedHandler(BaseHTTPRequestHandler):
    server: Feed

    def do_GET(self) -> None:
        query = parse_qs(urlparse(self.path).query, keep_blank_values=True)
        after_text = query.get("after", [""])[0]
        with self.server.lock:
            self.server.asked.append(after_text)
        after = int(after_text) if after_text else 0
        if after >= GATE_AFTER:
            self.server.gate.wait(120)
        numbers = range(after + 1, min(after + PAGE, ITEMS) + 1)
        body = json.dumps(
            {
                "items": [{"id": f"item-{n}", "n": n} for n in numbers],
                "next": str(numbers[-1]) if numbers else None,
            }
        ).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def feed() -> Iterator[Feed]:
    server = Feed()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.gate.set()
        server.shutdown()
        server.server_close()


def test_a_killed_poller_restarted_makes_exactly_one_wf_run_per_item(
    stack: StackAddresses, tmp_path: Path, feed: Feed
) -> None:
    config = lh_config(stack)
    wf_name = unique("poll-run")
    # Generated WfRun ids start with the pipeline's name: unique per run of the test.
    pipeline = f"poll_{uuid.uuid4().hex[:10]}"

    def flow(wf: WorkflowThread) -> None:
        wf.declare_int("n")

    register_wf_spec(config, Workflow(wf_name, flow))
    states_start = poll_states_end(stack)

    def state_in_kafka() -> dict[str, Any] | None:
        return poll_state(stack, pipeline, states_start)

    folder = write_pipelines(
        tmp_path / "pipelines",
        f"""
pipeline {pipeline} {{
  from poll "{feed.url}/items?after=${{cursor}}" {{
    every = 1s
    items = response.items
    cursor = response.next
    id = item.id
  }}
  run_wf "{wf_name}" {{ variables {{ n = value.n }} }}
}}
""",
    )

    first = LhpipeRun(folder, env={"LHPIPE_MAX_IN_FLIGHT": "2"})
    with first:
        first.wait_ready()
        acknowledged = wait_until(
            lambda: (n := first.stats(pipeline)["acknowledged"]) >= 300 and n, 90, "300 items"
        )
        # Wait until a state with a cursor reached Kafka (the runner commits every second),
        # then kill.
        wait_until(
            lambda: (state := state_in_kafka()) is not None and int(state["cursor"]) > 0,
            60,
            "a poll state in Kafka",
        )
        first.kill()
    feed.gate.set()
    assert acknowledged < ITEMS, "the kill must land while items flow"
    written = state_in_kafka()
    assert written is not None, "the first process wrote no state"
    resumed_from = int(written["cursor"])
    assert 0 < resumed_from < ITEMS
    # Items of the page after the cursor that were done are in the dedupe window.
    done_after = [
        n for n in (int(i.removeprefix("item-")) for i in written["seen"]) if n > resumed_from
    ]
    asked_before = len(feed.asked)

    with LhpipeRun(folder) as second:
        second.wait_ready()
        wait_until(
            lambda: (state := state_in_kafka()) is not None and state["cursor"] == str(ITEMS),
            180,
            "the cursor of the last page to be written",
            every=1.0,
        )
        read_again = second.stats(pipeline)["read"]
        assert second.terminate() == 0, second.log()

    # The second process started where the first one's state said, and read only what was
    # not done there.
    assert feed.asked[asked_before] == str(resumed_from)
    assert read_again == ITEMS - resumed_from - len(done_after)
    assert settled_wf_run_count(config, wf_name, ITEMS) == ITEMS


class _FlakyHandler(BaseHTTPRequestHandler):
    """``GET /latest``: 503 while the server's ``down`` is set, else three items with an
    ETag (304 when it matches)."""

    server: Any

    def do_GET(self) -> None:
        self.server.asked.append({k.lower(): v for k, v in self.headers.items()})
        if self.server.down:
            self.send_response(503)
            self.send_header("content-length", "0")
            self.end_headers()
            return
        if self.headers.get("if-none-match") == '"v1"':
            self.send_response(304)
            self.end_headers()
            return
        body = json.dumps([{"id": n} for n in (1, 2, 3)]).encode()
        self.send_response(200)
        self.send_header("etag", '"v1"')
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def test_an_endpoint_that_fails_shows_in_readyz_until_it_answers(tmp_path: Path) -> None:
    server: Any = ThreadingHTTPServer(("127.0.0.1", 0), _FlakyHandler)
    server.daemon_threads = True
    server.down = True
    server.asked = []
    threading.Thread(target=server.serve_forever, daemon=True).start()
    pipeline = f"flaky_{uuid.uuid4().hex[:10]}"
    out = tmp_path / "out.jsonl"
    folder = write_pipelines(
        tmp_path / "pipelines",
        f"""
pipeline {pipeline} {{
  from poll "http://127.0.0.1:{server.server_address[1]}/latest" {{
    every = 200ms
    id = item.id
  }}
  to file "{out}"
}}
""",
    )
    try:
        with LhpipeRun(folder) as run:

            def reported_down() -> dict[str, Any] | None:
                answer = run.readyz()
                if answer is None or answer[0] != 503:
                    return None
                # 503 while starting too, before the pipeline is listed.
                status: dict[str, Any] | None = answer[1]["pipelines"].get(pipeline)
                if status is None:
                    return None
                detail = status["detail"] or ""
                return status if "HTTP 503" in detail else None

            status = wait_until(reported_down, 60, "/readyz to report the failing endpoint")
            assert status["source_connected"] is False
            assert status["state"] == "running"
            server.down = False
            run.wait_ready()
            wait_until(lambda: out.exists() and len(out.read_text().splitlines()) == 3, 30, "3")
            asked = len(server.asked)
            wait_until(lambda: len(server.asked) >= asked + 3, 30, "three more ticks")
            assert run.terminate() == 0, run.log()
    finally:
        server.shutdown()
        server.server_close()
    # The same three items on every tick: 304 after the first answer, each item once.
    assert [json.loads(line)["id"] for line in out.read_text().splitlines()] == [1, 2, 3]
    assert server.asked[-1].get("if-none-match") == '"v1"'
