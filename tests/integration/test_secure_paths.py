"""The other paths with every connection secured (``lhpipe stack up --secure``,
docs/security.md): `from lh_output` (LittleHorse's output topic over SASL_SSL), dead letters
(the shared producer), and `from poll` (its state topic and its owner's group), each counting
what arrived. Records are read and WfRuns run on the open listeners."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from engine_run import LhpipeRun, create_topic, produce, read_all, unique, write_pipelines
from lh import lh_config, register_wf_spec, run_wf, wait_for_status
from littlehorse.model import LHStatus
from littlehorse.workflow import Workflow, WorkflowThread
from test_secure_kafka import SECRETS, assert_no_secret, every_output

from lhpipe.stack.addresses import StackAddresses
from lhpipe.stack.certs import StackCerts
from lhpipe.stack.env import kafka_secure_settings, littlehorse_secure_settings

pytestmark = pytest.mark.integration


def secured(certs: StackCerts) -> dict[str, str]:
    return {**kafka_secure_settings(certs, "oauth"), **littlehorse_secure_settings(certs)}


def test_lh_output_over_sasl_ssl_exports_every_completed_wf_run_once(
    stack: StackAddresses, secure_stack: StackCerts, tmp_path: Path
) -> None:
    config = lh_config(stack)

    def flow(wf: WorkflowThread) -> None:
        wf.declare_str("who")

    spec = register_wf_spec(config, Workflow(unique("sec-out-wf"), flow))
    target = unique("sec-lhout")
    create_topic(stack, target)
    folder = write_pipelines(
        tmp_path,
        f"""
pipeline exported {{
  from lh_output {{ kinds = [wf_run]  wf_spec = "{spec.id.name}" }}
  where event.status == "COMPLETED"
  to topic "{target}" {{ key = event.wf_run_id  value = {{ id = event.wf_run_id }} }}
}}
""",
    )

    with LhpipeRun(folder, env=secured(secure_stack)) as run:
        run.wait_ready()
        ids = [run_wf(config, spec, who=f"p-{n}") for n in range(8)]
        for wf_run_id in ids:
            wait_for_status(config, wf_run_id, LHStatus.COMPLETED)
        read_all(stack, target, len(ids), timeout=120)
        output = every_output(run)
        assert run.terminate() == 0, run.log()

    exported = [json.loads(r.value())["id"] for r in read_all(stack, target, len(ids))]
    assert sorted(exported) == sorted(ids)
    assert_no_secret(output, *SECRETS)


def test_poison_records_are_dead_lettered_over_sasl_ssl(
    stack: StackAddresses, secure_stack: StackCerts, tmp_path: Path
) -> None:
    source, target, dead = unique("sec-src"), unique("sec-ok"), unique("sec-dead")
    for topic in (source, target):
        create_topic(stack, topic)
    folder = write_pipelines(
        tmp_path,
        f"""
pipeline checked {{
  from topic "{source}" {{ value = json }}
  to topic "{target}" {{ value = {{ n = value.n }} }}
  on_error {{ dead_letter = "{dead}" }}
}}
""",
    )
    good = [json.dumps({"n": n}).encode() for n in range(10)]
    poison = [b"{not json", b"\xff\xfe", b"[1,"]
    produce(stack, source, ((None, value, ()) for value in [*good[:5], *poison, *good[5:]]))

    with LhpipeRun(folder, env=secured(secure_stack)) as run:
        run.wait_ready()
        read_all(stack, target, len(good), timeout=120)
        read_all(stack, dead, len(poison), timeout=120)
        output = every_output(run)
        assert run.terminate() == 0, run.log()

    assert sorted(json.loads(r.value())["n"] for r in read_all(stack, target, 10)) == list(
        range(10)
    )
    dead_letters = read_all(stack, dead, len(poison))
    assert sorted(r.value() for r in dead_letters) == sorted(poison)
    # The dead letters' headers (the error, where it failed) carry no credential either.
    assert_no_secret(output + "".join(repr(r.headers()) for r in dead_letters), *SECRETS)


class Feed(ThreadingHTTPServer):
    """Twelve items, then none."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _FeedHandler)
        self.items = [{"id": f"item-{n}"} for n in range(12)]


class _FeedHandler(BaseHTTPRequestHandler):
    server: Feed

    def do_GET(self) -> None:
        body = json.dumps({"items": self.server.items}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def feed() -> Iterator[Feed]:
    server = Feed()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def test_poll_over_sasl_ssl_takes_every_item_once(
    stack: StackAddresses, secure_stack: StackCerts, tmp_path: Path, feed: Feed
) -> None:
    target = unique("sec-poll")
    create_topic(stack, target)
    url = f"http://127.0.0.1:{feed.server_address[1]}/items"
    folder = write_pipelines(
        tmp_path,
        f"""
pipeline polled {{
  from poll "{url}" {{ every = 1s  items = response.items  id = item.id }}
  to topic "{target}" {{ value = {{ id = value.id }} }}
}}
""",
    )

    with LhpipeRun(folder, env=secured(secure_stack)) as run:
        run.wait_ready()
        read_all(stack, target, len(feed.items), timeout=120)
        output = every_output(run)
        assert run.terminate() == 0, run.log()

    got = sorted(json.loads(r.value())["id"] for r in read_all(stack, target, len(feed.items)))
    assert got == sorted(item["id"] for item in feed.items)  # polled every second: no repeat
    assert_no_secret(output, *SECRETS)
