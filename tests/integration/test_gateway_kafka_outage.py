"""Kafka stops under a running `lhpipe run` and starts again: requests are answered 202 before,
503 with Retry-After while it is down, and 202 again once it is back, without restarting
lhpipe; every request answered 202 is in the topic exactly once, and none answered 503 is
(docs/webhooks.md: a 503's record is not delivered later behind the caller's back).

The phases are told apart by order, not by time: each answer keeps the phase in which its
request was sent and the one in which its answer came, and the test moves the phase on at each
event (the broker stopped, its restart begun, it is back, lhpipe's producer is back).

The stack's Kafka is shared (LittleHorse lives on it, and it cannot be restarted alone), so this
test runs its own single-node broker from the same cached Kafka distribution, on free ports,
and stops and restarts that one with its data.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import httpx
import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition
from confluent_kafka.admin import AdminClient
from engine_run import LhpipeRun, free_port, unique, wait_until, write_pipelines
from gateway_support import GITHUB_SECRET, github_headers, header_map
from waiting import wait_for

from lhpipe.gateway.route import RETRY_AFTER_SECONDS
from lhpipe.stack import addresses
from lhpipe.stack.addresses import StackAddresses
from lhpipe.stack.java import require_jdk
from lhpipe.stack.pins import load_pins
from lhpipe.stack.process import ServiceProcess, is_running, launch, stop
from lhpipe.stack.resolve import cached_home
from lhpipe.stack.services import Kafka, Launch

pytestmark = pytest.mark.integration

SENDERS = 4
# A hang guard, not a bound on the answer's time: a request of the outage must be answered
# (at the 5 s deadline), and one that is not is an answer missing, which fails the test.
REQUEST_TIMEOUT_SECONDS = 60
# The phases, in order: requests are sent in one, answered in the same or a later one.
BEFORE, DOWN, RESTARTING, BACK, AFTER = range(5)


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


@dataclass(frozen=True)
class Answer:
    id: str
    sent: int  # the phase the request was sent in
    answered: int  # the phase its answer came in
    status: int | None  # None: no answer (a connection error or the client's timeout)
    retry_after: str | None


class Load:
    """Signed requests from :data:`SENDERS` threads, each with an id of its own (in its body,
    and as its delivery id); every answer is kept with its phases. The test moves the phase on
    (:meth:`enter`) and can hold the senders between requests (:meth:`hold`)."""

    def __init__(self, url: str, tag: str) -> None:
        self.url = url
        self.tag = tag
        self.answers: list[Answer] = []
        self._phase = BEFORE
        self._holding = False
        self._done = False
        self._busy = 0
        self._numbers = itertools.count()
        self._lock = threading.Condition()
        self._threads = [threading.Thread(target=self._send, daemon=True) for _ in range(SENDERS)]

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        with self._lock:
            self._done = True
            self._lock.notify_all()
        for thread in self._threads:
            thread.join(REQUEST_TIMEOUT_SECONDS + 10)

    def _send(self) -> None:
        with httpx.Client(timeout=REQUEST_TIMEOUT_SECONDS) as client:
            while True:
                with self._lock:
                    self._lock.wait_for(lambda: self._done or not self._holding)
                    if self._done:
                        return
                    sent = self._phase
                    self._busy += 1
                    request_id = f"{self.tag}-{next(self._numbers)}"
                body = json.dumps({"id": request_id}).encode()
                status = retry_after = None
                try:
                    response = client.post(
                        self.url, headers=github_headers(body, request_id), content=body
                    )
                    status, retry_after = response.status_code, response.headers.get("retry-after")
                except httpx.TransportError:
                    pass  # kept as an answer missing
                with self._lock:
                    # Read after the answer came: `answered` is a phase it came in or before.
                    self.answers.append(Answer(request_id, sent, self._phase, status, retry_after))
                    self._busy -= 1
                    self._lock.notify_all()
                time.sleep(0.02)

    def hold(self) -> None:
        """Send no more requests, and return once each one under way has its answer."""
        with self._lock:
            self._holding = True
            assert self._lock.wait_for(lambda: self._busy == 0, REQUEST_TIMEOUT_SECONDS + 10)

    def enter(self, phase: int) -> None:
        """Requests sent from now on are of ``phase``; sending goes on if it was held."""
        with self._lock:
            self._phase, self._holding = phase, False
            self._lock.notify_all()

    def count(self, matches: Callable[[Answer], bool]) -> int:
        with self._lock:
            return sum(1 for answer in self.answers if matches(answer))


def topic_ids(bootstrap: str, topic: str) -> list[str]:
    """The id in the body of every record of ``topic``, read from its start to its end (the
    end as it is now: nothing writes to it any more)."""
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": unique("reader"), "enable.auto.commit": False}
    )
    try:
        ends: dict[int, int] = {}
        for partition in consumer.list_topics(topic, timeout=10).topics[topic].partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), 10)
            if high > low:
                ends[partition] = high
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in ends])
        ids: list[str] = []

        def read_to_end() -> bool:
            for message in consumer.consume(num_messages=500, timeout=0.5):
                assert message.error() is None, message.error()
                request_id = json.loads(message.value())["id"]
                assert header_map(message)["lhpipe.webhook.id"] == request_id.encode()
                ids.append(request_id)
                if message.offset() + 1 >= ends.get(message.partition(), 0):
                    ends.pop(message.partition(), None)
            return not ends

        wait_for(read_to_end, f"every record of {topic}", 60)
    finally:
        consumer.close()
    return ids


def test_kafka_down_is_503_and_back_is_202_and_only_the_202s_are_in_the_topic(
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
        url = f"http://127.0.0.1:{run.port}/hooks/github"
        with Load(url, unique("outage")) as load:
            wait_for(lambda: load.count(lambda a: a.sent == BEFORE) >= 20, "requests before", 60)
            # The broker stops between requests: one under way as it shuts down may be written
            # with its acknowledgement lost, a 503 whose record is in the topic all the same
            # (docs/webhooks.md allows that), which this test would take for a defect.
            load.hold()
            kafka.stop()
            load.enter(DOWN)
            wait_for(
                lambda: load.count(lambda a: a.sent == a.answered == DOWN) >= 2 * SENDERS,
                "requests sent and answered while Kafka is down",
                120,
            )
            # The requests go on through the restart: a 503 whose record were still queued
            # would reach the broker now, and show in the topic.
            load.enter(RESTARTING)
            kafka.start()
            load.enter(BACK)
            # Until lhpipe's producer has reconnected (librdkafka backs off between attempts),
            # a request may still time out; once one sent now is accepted, every later one is.
            wait_for(
                lambda: load.count(lambda a: a.sent == BACK and a.status == 202),
                "a request accepted after Kafka is back",
                120,
            )
            load.enter(AFTER)
            wait_for(lambda: load.count(lambda a: a.sent == AFTER) >= 20, "requests after", 60)
        assert run.process.poll() is None  # the same lhpipe process throughout
        # Once lhpipe has exited, nothing more can reach the topic (its producer is closed).
        assert run.terminate() == 0, run.log()

    answers = load.answers
    # (phase sent, phase answered, status): count, for the messages below.
    seen = sorted(Counter((a.sent, a.answered, a.status) for a in answers).items())
    assert {a.status for a in answers} <= {202, 503}, seen
    assert {a.status for a in answers if a.sent == BEFORE} == {202}, seen
    assert {a.status for a in answers if a.sent == a.answered == DOWN} == {503}, seen
    assert {a.status for a in answers if a.sent == AFTER} == {202}, seen
    assert {a.retry_after for a in answers if a.status == 503} == {str(RETRY_AFTER_SECONDS)}

    accepted = [a.id for a in answers if a.status == 202]
    refused = {a.id for a in answers if a.status == 503}
    ids = topic_ids(kafka.bootstrap, topic)
    late = sorted(refused & set(ids))
    assert not late, f"{len(late)} request(s) answered 503 are in the topic: {late[:5]}"
    missing = sorted(set(accepted) - set(ids))
    assert not missing, f"{len(missing)} request(s) answered 202 are missing: {missing[:5]}"
    twice = sorted(i for i, n in Counter(ids).items() if n > 1)
    assert not twice, f"{len(twice)} request(s) are in the topic more than once: {twice[:5]}"
    assert sorted(ids) == sorted(accepted)  # and nothing else is there
