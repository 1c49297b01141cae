"""Kafka stops under a running `lhpipe run` and starts again: requests get 503 with
Retry-After while it is down, and 202 again after it is back without restarting lhpipe; every
request answered 202 is in the topic.

The stack's Kafka is shared (LittleHorse lives on it, and it cannot be restarted alone), so this
test runs its own single-node broker from the same cached Kafka distribution, on free ports,
and stops and restarts that one with its data.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from confluent_kafka import Consumer
from confluent_kafka.admin import AdminClient
from engine_run import LhpipeRun, free_port, unique, wait_until, write_pipelines
from gateway_support import GITHUB_SECRET, github_headers, header_map

from lhpipe.connect.webhooks.route import ACK_DEADLINE_SECONDS
from lhpipe.stack import addresses
from lhpipe.stack.addresses import StackAddresses
from lhpipe.stack.java import require_jdk
from lhpipe.stack.pins import load_pins
from lhpipe.stack.process import ServiceProcess, is_running, launch, stop
from lhpipe.stack.resolve import cached_home
from lhpipe.stack.services import Kafka, Launch

pytestmark = pytest.mark.integration

# A 503 must come once the deadline has passed, not when the client gives up; the margin
# covers librdkafka's once-a-second timeout scan and a loaded machine.
ANSWER_BOUND_SECONDS = ACK_DEADLINE_SECONDS + 5
OUTAGE_SECONDS = 12


class PrivateKafka:
    """A one-node KRaft broker of the stack's Kafka version, on its own ports and folder."""

    def __init__(self, folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        pins = load_pins()
        home = cached_home(pins.services["kafka"])
        if home is None:
            pytest.skip("Kafka is not in the stack's cache (run `lhpipe stack up` once)")
        self.port, controller = free_port(), free_port()
        folder.mkdir(parents=True, exist_ok=True)
        # The stack's Kafka launcher writes its ports from these names: point them elsewhere.
        monkeypatch.setattr(addresses, "KAFKA_PORT", self.port)
        monkeypatch.setattr(addresses, "KAFKA_CONTROLLER_PORT", controller)
        jdk = require_jdk(pins.services["kafka"].java, "kafka")
        self.launch: Launch = Kafka().launch(home, jdk, folder)  # formats the storage once
        monkeypatch.undo()
        self.log = folder / "kafka.log"
        self.process: ServiceProcess | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        self.process = launch("g2-kafka", self.launch.argv, {}, self.launch.cwd, self.log)
        admin = AdminClient({"bootstrap.servers": self.bootstrap})

        def ready() -> bool:
            assert self.process is not None and is_running(self.process), self.log.read_text()
            try:
                return bool(admin.list_topics(timeout=2).brokers)
            except Exception:
                return False

        wait_until(ready, 90, "the private Kafka broker", every=0.5)

    def stop(self) -> None:
        if self.process is not None:
            stop(self.process, 20)
            self.process = None


@pytest.fixture
def kafka(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[PrivateKafka]:
    broker = PrivateKafka(tmp_path / "kafka", monkeypatch)
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


@dataclass
class Load:
    """Sends signed requests one after another from a thread, each with its own delivery
    id, and keeps every answer."""

    url: str
    answers: list[tuple[str, int, float, str | None, float]] = field(default_factory=list)
    stopping: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        with httpx.Client(timeout=60) as client:
            for n in itertools.count():
                if self.stopping.is_set():
                    return
                delivery = f"delivery-{n}"
                body = b'{"n": %d}' % n
                started = time.monotonic()
                try:
                    response = client.post(
                        self.url, headers=github_headers(body, delivery), content=body
                    )
                except httpx.TransportError:
                    continue
                self.answers.append(
                    (
                        delivery,
                        response.status_code,
                        time.monotonic() - started,
                        response.headers.get("retry-after"),
                        started,
                    )
                )
                time.sleep(0.02)

    def accepted(self) -> list[str]:
        return [a[0] for a in self.answers if a[1] == 202]


def topic_ids(bootstrap: str, topic: str, expected: int) -> list[str]:
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": unique("reader"),
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([topic])
    ids: list[str] = []
    deadline = time.monotonic() + 60
    settle: float | None = None
    try:
        while time.monotonic() < deadline:
            for message in consumer.consume(num_messages=500, timeout=0.5):
                if message.error() is None:
                    ids.append(header_map(message)["lhpipe.webhook.id"].decode())
            if len(ids) >= expected and settle is None:
                settle = time.monotonic() + 3
            if settle is not None and time.monotonic() > settle:
                break
    finally:
        consumer.close()
    return ids


def test_kafka_down_is_503_and_back_is_202_without_losing_an_accepted_request(
    stack: StackAddresses, kafka: PrivateKafka, tmp_path: Path
) -> None:
    topic = unique("g2-outage")
    folder = write_pipelines(
        tmp_path / "pipelines",
        f"""
webhook hooks {{
  path = "/hooks/github"
  auth = hmac {{ preset = github  secret = env("GH_SECRET") }}
  topic = "{topic}"
}}
""",
    )
    env = {"KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap, "GH_SECRET": GITHUB_SECRET}
    with LhpipeRun(folder, env=env) as run:
        run.wait_ready()
        load = Load(f"http://127.0.0.1:{run.port}/hooks/github")
        sender = threading.Thread(target=load.run, daemon=True)
        sender.start()
        try:
            wait_until(lambda: len(load.accepted()) >= 20, 30, "requests accepted before")
            kafka.stop()
            stopped_at = time.monotonic()
            wait_until(
                lambda: any(a[1] == 503 and a[4] > stopped_at for a in load.answers),
                30,
                "a 503 while Kafka is down",
            )
            time.sleep(max(0.0, OUTAGE_SECONDS - (time.monotonic() - stopped_at)))
        finally:
            kafka.start()  # whatever happened: the broker comes back
        restarted_at = time.monotonic()
        wait_until(
            lambda: any(a[1] == 202 and a[4] > restarted_at for a in load.answers),
            60,
            "a 202 after Kafka is back",
        )
        wait_until(
            lambda: sum(1 for a in load.answers if a[1] == 202 and a[4] > restarted_at) >= 20,
            30,
            "requests accepted after",
        )
        load.stopping.set()
        sender.join(60)
        assert run.process.poll() is None  # the same lhpipe process throughout

    statuses = {a[1] for a in load.answers}
    assert statuses <= {202, 503}, statuses
    # Kafka was down only between the stop and the restart: every 503 is a refusal of that
    # outage (a request sent while the broker was shutting down may be one too).
    refused = [a for a in load.answers if a[1] == 503]
    assert any(a[4] + a[2] > stopped_at for a in refused), "no request refused while Kafka was down"
    assert all(a[3] is not None and int(a[3]) > 0 for a in load.answers if a[1] == 503)
    slowest = max(a[2] for a in refused)
    assert slowest < ANSWER_BOUND_SECONDS, f"a 503 took {slowest:.1f} s"
    accepted = load.accepted()
    ids = topic_ids(kafka.bootstrap, topic, expected=len(accepted))
    missing = set(accepted) - set(ids)
    assert not missing, f"{len(missing)} request(s) answered 202 are not in the topic"
    duplicated = {i for i in ids if ids.count(i) > 1}
    assert not duplicated
