"""The exports through `lhpipe run`: records from a topic reach a topic, an HTTP endpoint, a file
and the log, and the listener reports it on /readyz and /metrics."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]
from free_ports import free_port

from lhpipe.stack.addresses import StackAddresses

pytestmark = pytest.mark.integration

LHPIPE = Path(sys.executable).with_name("lhpipe")
WAIT_SECONDS = 60.0


class Endpoint:
    """An HTTP endpoint on 127.0.0.1 that records what it receives; its first answer is a 503."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, str], bytes]] = []
        received = self.requests

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                headers = {name.lower(): value for name, value in self.headers.items()}
                received.append((self.path, headers, body))
                first = len(received) == 1
                self.send_response(503 if first else 204)
                if first:
                    self.send_header("Retry-After", "0")
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                """Quiet: the test reads what was received."""

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def endpoint() -> Iterator[Endpoint]:
    server = Endpoint()
    yield server
    server.close()


def create_topics(stack: StackAddresses, *topics: str) -> None:
    admin = AdminClient({"bootstrap.servers": stack.kafka_bootstrap})
    futures = admin.create_topics(
        [NewTopic(t, num_partitions=1, replication_factor=1) for t in topics]
    )
    for future in futures.values():
        future.result(timeout=30)


def wait_for(what: str, condition: Callable[[], bool], process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    while not condition():
        assert process.poll() is None, f"lhpipe run exited with {process.returncode}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def read_topic(stack: StackAddresses, topic: str, count: int) -> list[tuple[bytes, Any]]:
    consumer = Consumer(
        {
            "bootstrap.servers": stack.kafka_bootstrap,
            "group.id": f"it-read-{topic}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    found: list[tuple[bytes, Any]] = []
    try:
        consumer.subscribe([topic])
        deadline = time.monotonic() + WAIT_SECONDS
        while len(found) < count and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is not None and message.error() is None:
                found.append((message.key(), json.loads(message.value())))
    finally:
        consumer.close()
    return found


def test_records_reach_every_export_and_the_listener_reports_it(
    stack: StackAddresses, endpoint: Endpoint, tmp_path: Path
) -> None:
    suffix = uuid.uuid4().hex[:8]
    source, target = f"it-exports-in-{suffix}", f"it-exports-out-{suffix}"
    create_topics(stack, source, target)
    pipeline = f"exports_{suffix}"
    (tmp_path / "exports.lhp").write_text(
        f"""pipeline {pipeline} {{
  from topic "{source}" {{ value = json  key = string }}
  let tagged = "${{value.name}}!"
  to topic "{target}" {{ key = key  value = {{ name = tagged  n = value.n }} }}
  to http "{endpoint.url}" {{
    method = "POST"
    headers {{ "X-Source" = "lhpipe" }}
    body = {{ name = value.name  offset = record.offset }}
  }}
  to file "out/exports.jsonl"
  to log {{ value = {{ key = key  n = value.n }} }}
}}
""",
        encoding="utf-8",
    )
    producer = Producer({"bootstrap.servers": stack.kafka_bootstrap})
    for n, name in enumerate(["ada", "grace", "edsger"]):
        producer.produce(source, key=f"k{n}", value=json.dumps({"name": name, "n": n}))
    assert producer.flush(30) == 0

    port = free_port()
    log_path = tmp_path / "lhpipe.log"
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            [str(LHPIPE), "run", "exports.lhp", "--port", str(port)],
            cwd=tmp_path,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
        try:
            out_file = tmp_path / "out" / "exports.jsonl"

            def file_lines() -> list[Any]:
                if not out_file.exists():
                    return []
                return [json.loads(line) for line in out_file.read_text().splitlines()]

            # Three records plus the one 503 the endpoint answered first.
            wait_for("the HTTP endpoint", lambda: len(endpoint.requests) >= 4, process)
            wait_for("the file", lambda: len(file_lines()) >= 3, process)
            exported = read_topic(stack, target, 3)

            # The endpoint records a request before answering it: the metrics and /readyz are
            # read once they have caught up with the last answer.
            base = f"http://127.0.0.1:{port}"
            http_label = f"to_http:{endpoint.url}"
            out_labels = f'pipeline="{pipeline}",target="{http_label}"'
            out_line = f"lhpipe_records_out_total{{{out_labels}}} 3.0"
            seen: dict[str, Any] = {}

            def caught_up() -> bool:
                seen["ready"] = httpx.get(f"{base}/readyz", timeout=30)
                seen["metrics"] = httpx.get(f"{base}/metrics", timeout=30).text
                return seen["ready"].status_code == 200 and out_line in seen["metrics"]

            wait_for("the metrics and /readyz", caught_up, process)
            ready, metrics = seen["ready"], seen["metrics"]
            page = httpx.get(f"{base}/", timeout=30).text
        finally:
            process.send_signal(signal.SIGTERM)
            exit_code = process.wait(timeout=60)
    output = log_path.read_text(encoding="utf-8")
    assert exit_code == 0, output

    assert exported == [
        (b"k0", {"name": "ada!", "n": 0}),
        (b"k1", {"name": "grace!", "n": 1}),
        (b"k2", {"name": "edsger!", "n": 2}),
    ]
    bodies = [json.loads(body) for _, _, body in endpoint.requests]
    # The first answer was a 503: that request came again; every record arrived.
    assert sorted(b["offset"] for b in bodies[1:]) == [0, 1, 2]
    assert bodies[0] in bodies[1:]
    assert all(h["x-source"] == "lhpipe" for _, h, _ in endpoint.requests)
    assert all(h["content-type"] == "application/json" for _, h, _ in endpoint.requests)
    assert sorted(file_lines(), key=lambda line: line["n"]) == [
        {"name": "ada", "n": 0},
        {"name": "grace", "n": 1},
        {"name": "edsger", "n": 2},
    ]
    logged = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    exports_logged = [json.loads(e["message"]) for e in logged if e["logger"] == "lhpipe.to_log"]
    assert sorted(exports_logged, key=lambda v: v["n"]) == [
        {"key": "k0", "n": 0},
        {"key": "k1", "n": 1},
        {"key": "k2", "n": 2},
    ]

    assert ready.status_code == 200
    assert ready.json()["pipelines"][pipeline]["state"] == "running"
    assert out_line in metrics
    assert f'lhpipe_retries_total{{pipeline="{pipeline}",target="{http_label}"}} 1.0' in metrics
    assert f'lhpipe_records_in_total{{pipeline="{pipeline}"}} 3.0' in metrics
    assert pipeline in page
