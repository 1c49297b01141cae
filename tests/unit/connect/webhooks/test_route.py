"""Webhook routes driven as raw ASGI, with the Gateway building them from real `.lhp` text and
fakes standing in for Kafka, the schema registry and LittleHorse: what the caller gets back,
and exactly what is (or is not) produced or sent."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import io
import json
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import fastavro
import pytest

from lhpipe.check.program import Program
from lhpipe.clients.registry import RegisteredSchema
from lhpipe.core import metrics
from lhpipe.core.avro.wire import parse_avro_schema
from lhpipe.core.errors import PermanentError, TransientError
from lhpipe.core.plans import Plan, RunWfPlan
from lhpipe.core.senders import Sender
from lhpipe.gateway.gateway import Gateway
from lhpipe.gateway.outcome import Authenticated, AuthOutcome, Refused
from lhpipe.gateway.problems import Problem
from lhpipe.gateway.route import WebhookRoute, new_webhook_id
from lhpipe.kinds import compile_program, load_texts
from lhpipe.settings import Settings
from lhpipe.syntax import ast

SECRET = "s3cret"
JSON_TYPE = "application/json"

SCHEMA = "schema Applicant { applicant_id: string  age: int  note: string? }\n"


# -- fakes ---------------------------------------------------------------------------------------


@dataclass
class Produced:
    topic: str
    value: bytes | None
    key: bytes | None
    headers: dict[str, bytes | None]


class FakeProducer:
    """Acknowledges at once, or fails as told; keeps what it acknowledged."""

    def __init__(self) -> None:
        self.records: list[Produced] = []
        self.fail: Exception | None = None

    async def produce(
        self,
        topic: str,
        value: bytes | None,
        key: bytes | None = None,
        headers: Sequence[tuple[str, bytes | None]] = (),
    ) -> None:
        if self.fail is not None:
            raise self.fail
        self.records.append(Produced(topic, value, key, dict(headers)))


class FakeRegistry:
    def __init__(self) -> None:
        self.registered: list[tuple[str, Any]] = []
        self.down = False
        self.latest_avro: dict[str, Any] | None = None

    async def register(self, subject: str, avro: Mapping[str, Any] | str) -> int:
        if self.down:
            raise TransientError("connection refused", code="REGISTRY_UNAVAILABLE")
        self.registered.append((subject, avro))
        return 41

    async def latest(self, subject: str) -> RegisteredSchema:
        if self.down:
            raise TransientError("connection refused", code="REGISTRY_UNAVAILABLE")
        assert self.latest_avro is not None
        return RegisteredSchema(
            subject, 3, 77, parse_avro_schema(self.latest_avro), self.latest_avro
        )


class FakeSender:
    """A LittleHorse stand-in: records plans, or raises what ``outcome`` says."""

    def __init__(self) -> None:
        self.plans: list[Plan] = []
        self.outcome: Exception | None = None

    async def send(self, plan: Plan) -> None:
        if self.outcome is not None:
            raise self.outcome
        self.plans.append(plan)

    async def close(self) -> None:
        pass

    def connected(self) -> bool:
        return True


@dataclass
class FakeClients:
    registry: FakeRegistry = field(default_factory=FakeRegistry)
    sender_: FakeSender = field(default_factory=FakeSender)
    shared_producer: FakeProducer = field(default_factory=FakeProducer)

    def kafka_producer(self) -> FakeProducer:
        return self.shared_producer

    def schema_registry(self) -> FakeRegistry:
        return self.registry

    def sender(self, kind: ast.TargetKind) -> Sender:
        return self.sender_


# -- driving a route -----------------------------------------------------------------------------


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes
    reads: int  # how many times the handler called receive()

    def json(self) -> Any:
        return json.loads(self.body)


def call(
    route: Callable[..., Awaitable[None]],
    *,
    method: str = "POST",
    headers: Mapping[str, str] | None = None,
    chunks: Sequence[bytes] = (b"",),
    query: bytes = b"",
    disconnect_after: int | None = None,
) -> Answer | None:
    """One request through the ASGI handler; ``None`` when it answered nothing."""
    scope = {
        "type": "http",
        "method": method,
        "path": "/h",
        "query_string": query,
        "headers": [(k.lower().encode(), v.encode("latin-1")) for k, v in (headers or {}).items()],
    }
    sent: list[dict[str, Any]] = []
    reads = 0

    async def receive() -> dict[str, Any]:
        nonlocal reads
        reads += 1
        if disconnect_after is not None and reads > disconnect_after:
            return {"type": "http.disconnect"}
        index = reads - 1
        if index >= len(chunks):
            raise AssertionError("the handler read past the end of the body")
        return {"type": "http.request", "body": chunks[index], "more_body": index < len(chunks) - 1}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(route(scope, receive, send))
    if not sent:
        return None
    start, body = sent
    assert start["type"] == "http.response.start" and body["type"] == "http.response.body"
    answer_headers = {k.decode(): v.decode() for k, v in start["headers"]}
    assert int(answer_headers["content-length"]) == len(body["body"])
    return Answer(start["status"], answer_headers, body["body"], reads)


def github(
    body: bytes, delivery: str | None = "72d3162e-cc78-11e3-81ab-4c9367dc0958"
) -> dict[str, str]:
    headers = {
        "content-type": JSON_TYPE,
        "x-hub-signature-256": "sha256="
        + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest(),
    }
    if delivery is not None:
        headers["x-github-delivery"] = delivery
    return headers


def program_of(text: str) -> Program:
    result = load_texts({"p.lhp": text})
    assert result.program is not None, [d.message for d in result.diagnostics]
    return result.program


def gateway(text: str, clients: FakeClients, producer: FakeProducer, **env: str) -> Gateway:
    program = program_of(text)
    gw = Gateway(
        compile_program(program, {}),
        program,
        Settings(environ=env),
        clients,
        producer=producer,
    )
    gw.build()
    return gw


def route_of(gw: Gateway, path: str = "/h") -> WebhookRoute:
    route = gw.routes[path]
    assert isinstance(route, WebhookRoute)
    return route


def topic_webhook(
    body: str = "json",
    key: str = "",
    auth: str = f'hmac {{ preset = github  secret = "{SECRET}" }}',
    extra: str = "",
) -> str:
    return (
        SCHEMA
        + f'webhook w {{ path = "/h"  auth = {auth}  body = {body}  topic = "intake"\n'
        + f"  {key} {extra} }}\n"
        + "pipeline p { from webhook w  to log }\n"
    )


@pytest.fixture
def clients() -> FakeClients:
    return FakeClients()


@pytest.fixture
def producer() -> FakeProducer:
    return FakeProducer()


# -- topic mode ----------------------------------------------------------------------------------


def test_an_accepted_json_webhook_is_produced_with_its_id_and_answered_202(
    clients: FakeClients, producer: FakeProducer
) -> None:
    route = route_of(gateway(topic_webhook(), clients, producer))
    body = b'{"order": 7}'

    answer = call(route, headers=github(body), chunks=[body])

    assert answer is not None
    assert answer.status == 202
    assert answer.json() == {"id": "72d3162e-cc78-11e3-81ab-4c9367dc0958"}
    assert answer.headers["content-type"] == "application/json"
    [record] = producer.records
    assert record.topic == "intake"
    assert record.value == body  # the bytes as received
    assert record.key == b"72d3162e-cc78-11e3-81ab-4c9367dc0958"
    assert record.headers == {
        "lhpipe.webhook": b"w",
        "lhpipe.webhook.id": b"72d3162e-cc78-11e3-81ab-4c9367dc0958",
        "content-type": b"application/json",
    }


def test_a_schema_body_is_registered_once_under_the_topic_subject_and_written_in_the_wire_format(
    clients: FakeClients, producer: FakeProducer
) -> None:
    route = route_of(
        gateway(topic_webhook(body="Applicant", key="key = body.applicant_id"), clients, producer)
    )
    first = b'{"applicant_id": "ann-1", "age": 30}'
    second = b'{"applicant_id": "bob-2", "age": 41, "note": "hi"}'

    answers = [
        call(route, headers=github(b, f"d{i}"), chunks=[b]) for i, b in enumerate((first, second))
    ]

    assert [a.status for a in answers if a is not None] == [202, 202]
    assert [subject for subject, _ in clients.registry.registered] == ["intake-value"]
    schema = parse_avro_schema(clients.registry.registered[0][1])
    values = []
    for record in producer.records:
        assert record.value is not None and record.value[:5] == b"\x00\x00\x00\x00\x29"  # id 41
        values.append(fastavro.schemaless_reader(io.BytesIO(record.value[5:]), schema))
        assert record.headers["content-type"] == b"application/vnd.apache.avro+binary"
    assert values == [
        {"applicant_id": "ann-1", "age": 30, "note": None},
        {"applicant_id": "bob-2", "age": 41, "note": "hi"},
    ]
    assert [r.key for r in producer.records] == [b"ann-1", b"bob-2"]


def test_a_registry_schema_is_checked_and_written_with_its_latest_version(
    clients: FakeClients, producer: FakeProducer
) -> None:
    clients.registry.latest_avro = {
        "type": "record",
        "name": "Verdict",
        "fields": [{"name": "approved", "type": "boolean"}],
    }
    text = (
        'schema Verdict from registry "verdicts-value"\n'
        'webhook w { path = "/h"  auth = none  body = Verdict  topic = "verdicts" }\n'
        "pipeline p { from webhook w  to log }\n"
    )
    route = route_of(gateway(text, clients, producer))

    good = call(route, headers={"content-type": JSON_TYPE}, chunks=[b'{"approved": true}'])
    bad = call(route, headers={"content-type": JSON_TYPE}, chunks=[b'{"approved": "yes"}'])

    assert good is not None and good.status == 202
    assert bad is not None and bad.status == 400 and bad.json()["field"] == "approved"
    assert clients.registry.registered == []  # already registered: used as it is
    [record] = producer.records
    assert record.value == b"\x00\x00\x00\x00\x4d\x01"  # schema id 77, then Avro `true`


def test_the_webhook_id_is_the_idempotency_key_without_a_provider_id_else_a_new_uuid(
    clients: FakeClients, producer: FakeProducer
) -> None:
    route = route_of(gateway(topic_webhook(auth="none"), clients, producer))
    headers = {"content-type": JSON_TYPE}

    keyed = call(route, headers={**headers, "idempotency-key": "order-7-attempt"}, chunks=[b"{}"])
    fresh = [call(route, headers=headers, chunks=[b"{}"]) for _ in range(2)]

    assert keyed is not None and keyed.json() == {"id": "order-7-attempt"}
    ids = [a.json()["id"] for a in fresh if a is not None]
    assert len(set(ids)) == 2 and all(len(i) == 36 and i.count("-") == 4 for i in ids)
    assert [r.headers["lhpipe.webhook.id"] for r in producer.records] == [
        b"order-7-attempt",
        *(i.encode() for i in ids),
    ]


class WaitingAuthenticator:
    """An auth form that waits before answering (as oauth does on its first token): the route
    awaits it rather than checking at once."""

    def __init__(self, outcome: AuthOutcome) -> None:
        self.outcome = outcome
        self.calls = 0

    async def authenticate(self, headers: Mapping[str, str], body: bytes) -> AuthOutcome:
        self.calls += 1
        await asyncio.sleep(0)
        return self.outcome


def test_an_auth_form_that_waits_is_awaited_and_its_verdict_followed(
    clients: FakeClients, producer: FakeProducer
) -> None:
    text = topic_webhook(body="Applicant")
    built = route_of(gateway(text, clients, producer))
    body = b'{"applicant_id": "a-1", "age": 30}'
    headers = {"content-type": JSON_TYPE}

    let_in = WaitingAuthenticator(Authenticated(webhook_id="evt-9"))
    route = WebhookRoute(built.webhook, program_of(text), let_in, built.body, producer=producer)
    accepted = call(route, headers=headers, chunks=[body])
    turned_away = WaitingAuthenticator(Refused(Problem(401, "no"), "a test"))
    route = WebhookRoute(
        built.webhook, program_of(text), turned_away, built.body, producer=producer
    )
    refused = call(route, headers=headers, chunks=[body])

    assert accepted is not None and accepted.status == 202 and accepted.json() == {"id": "evt-9"}
    assert refused is not None and refused.status == 401
    assert let_in.calls == 1 and turned_away.calls == 1
    [record] = producer.records
    assert record.key == b"evt-9" and record.value is not None
    assert fastavro.schemaless_reader(
        io.BytesIO(record.value[5:]), parse_avro_schema(clients.registry.registered[0][1]), None
    ) == {"applicant_id": "a-1", "age": 30, "note": None}


def test_a_new_webhook_id_is_a_random_version_4_uuid() -> None:
    ids = [new_webhook_id() for _ in range(200)]

    assert len(set(ids)) == 200
    for text in ids:
        parsed = uuid.UUID(text)
        assert str(parsed) == text
        assert parsed.version == 4 and parsed.variant == uuid.RFC_4122


@pytest.mark.parametrize("key", ["", " leading-space", "x" * 256, "tab\there", "é"])
def test_an_idempotency_key_that_is_not_1_to_255_visible_ascii_characters_is_refused(
    clients: FakeClients, producer: FakeProducer, key: str
) -> None:
    route = route_of(gateway(topic_webhook(auth="none"), clients, producer))

    answer = call(
        route, headers={"content-type": JSON_TYPE, "idempotency-key": key}, chunks=[b"{}"]
    )

    assert answer is not None and answer.status == 400
    assert "Idempotency-Key" in answer.json()["detail"]
    assert producer.records == []


@pytest.mark.parametrize(
    "webhook_id",
    ["72d3162e-cc78-11e3-81ab-4c9367dc0958", "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W", "a:b/c.d"],
)
def test_the_default_key_is_the_webhook_id_exactly(
    clients: FakeClients, producer: FakeProducer, webhook_id: str
) -> None:
    route = route_of(gateway(topic_webhook(auth="none"), clients, producer))

    answer = call(
        route,
        headers={"content-type": JSON_TYPE, "idempotency-key": webhook_id},
        chunks=[b'{"n": 1}'],
    )

    assert answer is not None and answer.status == 202
    assert answer.json() == {"id": webhook_id}
    [record] = producer.records
    assert record.key == webhook_id.encode()
    assert record.headers["lhpipe.webhook.id"] == webhook_id.encode()


@pytest.mark.parametrize(
    ("sent", "recorded"),
    [(None, b"application/octet-stream"), ("text/csv", b"text/csv")],
)
def test_a_bytes_body_record_always_has_a_content_type(
    clients: FakeClients, producer: FakeProducer, sent: str | None, recorded: bytes
) -> None:
    route = route_of(gateway(topic_webhook(body="bytes", auth="none"), clients, producer))

    answer = call(route, headers={} if sent is None else {"content-type": sent}, chunks=[b"a,b"])

    assert answer is not None and answer.status == 202
    [record] = producer.records
    assert record.value == b"a,b"
    assert record.headers["content-type"] == recorded


def test_the_key_expression_sees_body_headers_query_and_the_request_id(
    clients: FakeClients, producer: FakeProducer
) -> None:
    key = 'key = "${headers["x-tenant"] ?? ""}-${query.region ?? ""}-${body.n}-${request.id}"'
    route = route_of(gateway(topic_webhook(auth="none", key=key), clients, producer))

    answer = call(
        route,
        headers={"content-type": JSON_TYPE, "x-tenant": "acme", "idempotency-key": "i-1"},
        query=b"region=eu&x=1",
        chunks=[b'{"n": 3}'],
    )

    assert answer is not None and answer.status == 202
    assert producer.records[0].key == b"acme-eu-3-i-1"


def test_a_key_expression_that_fails_on_the_body_is_a_400_and_nothing_is_produced(
    clients: FakeClients, producer: FakeProducer
) -> None:
    route = route_of(
        gateway(topic_webhook(auth="none", key="key = body.customer.id"), clients, producer)
    )

    answer = call(route, headers={"content-type": JSON_TYPE}, chunks=[b'{"order": 1}'])

    assert answer is not None and answer.status == 400
    assert "customer" in answer.json()["detail"]
    assert producer.records == []


# -- refusals ------------------------------------------------------------------------------------


def test_a_method_the_webhook_does_not_take_is_405_with_allow_and_the_body_is_not_read(
    clients: FakeClients, producer: FakeProducer
) -> None:
    route = route_of(gateway(topic_webhook(extra='methods = ["POST", "PUT"]'), clients, producer))

    answer = call(route, method="DELETE", chunks=[b"{}"])

    assert answer is not None and answer.status == 405
    assert answer.headers["allow"] == "POST, PUT"
    assert answer.headers["connection"] == "close"
    assert answer.reads == 0
    assert producer.records == []


def test_a_content_length_over_max_body_is_413_before_any_of_the_body_is_read(
    clients: FakeClients, producer: FakeProducer
) -> None:
    route = route_of(gateway(topic_webhook(extra="max_body = 1KiB"), clients, producer))

    answer = call(route, headers={**github(b"{}"), "content-length": "1025"}, chunks=[b"{}"])

    assert answer is not None and answer.status == 413
    assert answer.json()["title"] == "Content Too Large"
    assert answer.headers["connection"] == "close"
    assert answer.reads == 0
    assert producer.records == []


def test_a_body_growing_past_max_body_is_413_without_reading_the_rest(
    clients: FakeClients, producer: FakeProducer
) -> None:
    route = route_of(gateway(topic_webhook(extra="max_body = 1KiB"), clients, producer))
    chunks = [b"x" * 400] * 10  # 4,000 bytes, sent without a Content-Length

    answer = call(route, headers=github(b"".join(chunks)), chunks=chunks)

    assert answer is not None and answer.status == 413
    assert answer.reads == 3  # 1,200 bytes: over the limit, nothing more read
    assert answer.headers["connection"] == "close"
    assert producer.records == []


def test_a_body_of_exactly_max_body_is_accepted(
    clients: FakeClients, producer: FakeProducer
) -> None:
    route = route_of(gateway(topic_webhook(extra="max_body = 1KiB"), clients, producer))
    body = b'{"pad": "' + b"x" * (1024 - 11) + b'"}'
    assert len(body) == 1024

    answer = call(route, headers=github(body), chunks=[body[:500], body[500:]])

    assert answer is not None and answer.status == 202


def test_a_client_that_goes_away_mid_body_gets_nothing_produced(
    clients: FakeClients, producer: FakeProducer
) -> None:
    route = route_of(gateway(topic_webhook(), clients, producer))

    answer = call(route, headers=github(b"{}"), chunks=[b"{", b"}"], disconnect_after=1)

    assert answer is None
    assert producer.records == []


@pytest.mark.parametrize(
    ("headers", "body", "status"),
    [
        ({"content-type": JSON_TYPE}, b"{}", 401),  # no signature
        ({"content-type": "text/plain"}, b"{}", 415),
        ({"content-type": JSON_TYPE}, b"{nope", 400),
        ({"content-type": JSON_TYPE, "content-length": "ten"}, b"{}", 400),
    ],
)
def test_refusals_answer_a_problem_and_produce_nothing(
    clients: FakeClients,
    producer: FakeProducer,
    headers: dict[str, str],
    body: bytes,
    status: int,
) -> None:
    route = route_of(gateway(topic_webhook(), clients, producer))
    signed = {**github(body), **headers} if status != 401 else headers

    answer = call(route, headers=signed, chunks=[body])

    assert answer is not None and answer.status == status
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.json()["status"] == status
    assert producer.records == []


# -- Kafka and the registry unavailable ----------------------------------------------------------


def test_kafka_not_acknowledging_in_time_is_503_with_retry_after(
    clients: FakeClients, producer: FakeProducer
) -> None:
    # What the Gateway's producer reports when a record times out (its deadline).
    producer.fail = TransientError("Local: Message timed out", code="KAFKA_MSG_TIMED_OUT")
    route = route_of(gateway(topic_webhook(), clients, producer))

    answer = call(route, headers=github(b"{}"), chunks=[b"{}"])

    assert answer is not None and answer.status == 503
    assert answer.headers["retry-after"] == "5"


@pytest.mark.parametrize(
    ("code", "status"),
    [("KAFKA_MSG_SIZE_TOO_LARGE", 413), ("KAFKA_TOPIC_AUTHORIZATION_FAILED", 500)],
)
def test_kafka_refusing_the_record_for_good_is_not_a_503(
    clients: FakeClients, producer: FakeProducer, code: str, status: int
) -> None:
    producer.fail = PermanentError("refused", code=code)
    route = route_of(gateway(topic_webhook(), clients, producer))

    answer = call(route, headers=github(b"{}"), chunks=[b"{}"])

    assert answer is not None and answer.status == status
    assert "retry-after" not in answer.headers


def test_the_registry_down_on_first_use_is_503_and_the_next_request_registers(
    clients: FakeClients, producer: FakeProducer
) -> None:
    route = route_of(gateway(topic_webhook(body="Applicant"), clients, producer))
    body = b'{"applicant_id": "a", "age": 1}'
    clients.registry.down = True

    refused = call(route, headers=github(body), chunks=[body])
    clients.registry.down = False
    accepted = call(route, headers=github(body), chunks=[body])

    assert refused is not None and refused.status == 503 and "retry-after" in refused.headers
    assert accepted is not None and accepted.status == 202
    assert len(producer.records) == 1


def test_answers_are_counted_by_route_and_status(
    clients: FakeClients, producer: FakeProducer
) -> None:
    text = topic_webhook().replace("webhook w ", "webhook counted ")
    text = text.replace("from webhook w ", "from webhook counted ")
    route = route_of(gateway(text, clients, producer))

    def count(status: str) -> float:
        value = metrics.REGISTRY.get_sample_value(
            "lhpipe_http_requests_total", {"route": "counted", "status": status}
        )
        return value or 0.0

    # the registry is process-wide: count what this test adds, not what a run before it left
    before = (count("202"), count("401"))
    call(route, headers=github(b"{}"), chunks=[b"{}"])
    call(route, headers=github(b"{}"), chunks=[b"{}"])
    call(route, headers={"content-type": JSON_TYPE}, chunks=[b"{}"])

    assert (count("202") - before[0], count("401") - before[1]) == (2.0, 1.0)


# -- direct mode ---------------------------------------------------------------------------------


def direct_text(on_error: str = "") -> str:
    return (
        'webhook w { path = "/h"  auth = none  body = json }\n'
        'pipeline p { from webhook w  where value.ok == true  run_wf "flow" {}  '
        f"{on_error} }}\n"
    )


def test_direct_mode_runs_the_pipeline_inside_the_request_with_the_default_key_as_id(
    clients: FakeClients, producer: FakeProducer
) -> None:
    route = route_of(gateway(direct_text(), clients, producer))

    answer = call(
        route,
        headers={"content-type": JSON_TYPE, "idempotency-key": "msg_2KWP", "authorization": "x"},
        chunks=[b'{"ok": true, "n": 1}'],
    )

    assert answer is not None and answer.status == 202
    assert answer.json() == {"id": "msg_2KWP"}
    assert clients.sender_.plans == [
        RunWfPlan(wf_spec="flow", wf_run_id="msg-2KWP", variables={"ok": True, "n": 1})
    ]
    assert producer.records == []


def test_direct_mode_answers_202_for_a_request_a_where_drops(
    clients: FakeClients, producer: FakeProducer
) -> None:
    route = route_of(gateway(direct_text(), clients, producer))

    answer = call(route, headers={"content-type": JSON_TYPE}, chunks=[b'{"ok": false}'])

    assert answer is not None and answer.status == 202
    assert clients.sender_.plans == []


def test_direct_mode_permanent_error_is_422_without_a_dead_letter_topic(
    clients: FakeClients, producer: FakeProducer
) -> None:
    clients.sender_.outcome = PermanentError("variable n is not declared", code="INVALID_ARGUMENT")
    route = route_of(gateway(direct_text(), clients, producer))

    answer = call(route, headers={"content-type": JSON_TYPE}, chunks=[b'{"ok": true, "n": 1}'])

    assert answer is not None and answer.status == 422
    assert answer.json()["title"] == "Unprocessable Content"
    assert "variable n is not declared" in answer.json()["detail"]


def test_direct_mode_permanent_error_is_dead_lettered_without_credentials_and_accepted(
    clients: FakeClients, producer: FakeProducer
) -> None:
    clients.sender_.outcome = PermanentError("variable n is not declared", code="INVALID_ARGUMENT")
    route = route_of(gateway(direct_text('on_error { dead_letter = "dlq" }'), clients, producer))
    body = b'{"ok": true, "n": 1}'

    answer = call(
        route,
        headers={"content-type": JSON_TYPE, "idempotency-key": "k-9", "authorization": "Bearer t"},
        chunks=[body],
    )

    assert answer is not None and answer.status == 202
    [dead] = clients.shared_producer.records
    assert (dead.topic, dead.key, dead.value) == ("dlq", b"k-9", body)
    assert dead.headers["lhpipe.source.webhook.id"] == b"k-9"
    assert dead.headers["lhpipe.error.code"] == b"INVALID_ARGUMENT"
    assert dead.headers["lhpipe.webhook"] == b"w"
    assert dead.headers["idempotency-key"] == b"k-9"
    assert "authorization" not in dead.headers


def test_direct_mode_targets_unavailable_past_the_deadline_is_503(
    clients: FakeClients, producer: FakeProducer
) -> None:
    clients.sender_.outcome = TransientError("UNAVAILABLE", code="UNAVAILABLE")
    gw = gateway(direct_text("on_error { backoff = 10ms }"), clients, producer)
    route = route_of(gw)
    route.direct_deadline = 0.1

    answer = call(route, headers={"content-type": JSON_TYPE}, chunks=[b'{"ok": true}'])

    assert answer is not None and answer.status == 503
    assert answer.headers["retry-after"] == "5"


# -- the Gateway ---------------------------------------------------------------------------------


def test_a_webhook_that_cannot_be_built_answers_503_and_is_reported_failed(
    clients: FakeClients, producer: FakeProducer
) -> None:
    text = (
        'webhook broken { path = "/b"  topic = "t"\n'
        '  auth = hmac { preset = github  secret = env("NOPE") } }\n'
        'webhook fine { path = "/h"  auth = none  topic = "t2" }\n'
    )
    gw = gateway(text, clients, producer)

    answer = call(gw.routes["/b"])
    fine = call(gw.routes["/h"], headers={"content-type": JSON_TYPE}, chunks=[b"1"])

    assert answer is not None and answer.status == 503
    assert "NOPE" not in answer.body.decode()
    assert fine is not None and fine.status == 202
    [status] = gw.statuses()
    assert status.name == "webhook:broken" and not status.ready
    assert status.detail is not None and "NOPE" in status.detail


def test_install_puts_the_whole_table_on_the_listener_in_one_assignment(
    clients: FakeClients, producer: FakeProducer
) -> None:
    from lhpipe.gateway.server import EngineApp

    text = (
        'webhook a { path = "/a"  auth = none  topic = "t" }\n'
        'webhook b { path = "/b"  auth = none  topic = "t" }\n'
    )
    gw = gateway(text, clients, producer)
    app = EngineApp(lambda: [])

    gw.install(app)

    assert app.routes is gw.routes
    assert set(app.routes) == {"/a", "/b"}


def test_once_the_gateway_closes_every_webhook_answers_503_with_retry_after(
    clients: FakeClients, producer: FakeProducer
) -> None:
    from lhpipe.gateway.server import EngineApp

    gw = gateway(topic_webhook(), clients, producer)
    app = EngineApp(lambda: [])
    gw.install(app)

    asyncio.run(gw.close())
    answer = call(app.routes["/h"], headers=github(b"{}"), chunks=[b"{}"])

    assert answer is not None and answer.status == 503
    assert answer.headers["retry-after"] == "5"
    assert producer.records == []
