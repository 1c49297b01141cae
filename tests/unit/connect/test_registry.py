"""The schema registry client against an in-process HTTP server speaking the Confluent
(Apicurio ccompat) API: caching, error classes, registration; and the wire format."""

from __future__ import annotations

import asyncio
import io
import json
import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import fastavro
import pytest

from lhpipe.clients.registry import (
    RegistryPermanentError,
    RegistryTransientError,
    SchemaRegistry,
)
from lhpipe.core.avro.wire import encode, parse_avro_schema, schema_id_of
from lhpipe.core.errors import PermanentError

ORDER = {
    "type": "record",
    "name": "Order",
    "namespace": "lhpipe",
    "fields": [
        {"name": "id", "type": "string"},
        {"name": "amount", "type": "double"},
        {"name": "note", "type": ["null", "string"], "default": None},
    ],
}


class FakeRegistry(ThreadingHTTPServer):
    """Schemas by id and subjects, as the registry's REST API serves them."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.schemas: dict[int, str] = {}
        self.subjects: dict[str, list[int]] = {}
        self.requests: list[str] = []
        self.failing = False

    def add(self, subject: str, schema: str) -> int:
        ids = {text: schema_id for schema_id, text in self.schemas.items()}
        schema_id = ids.get(schema, len(self.schemas) + 1)
        self.schemas[schema_id] = schema
        versions = self.subjects.setdefault(subject, [])
        if schema_id not in versions:
            versions.append(schema_id)
        return schema_id

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    server: FakeRegistry

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""

    def _answer(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/vnd.schemaregistry.v1+json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:  # the handler protocol's name
        path = self.path.split("?")[0]
        self.server.requests.append(f"GET {path}")
        if self.server.failing:
            self._answer(503, {"error_code": 50301, "message": "overloaded"})
            return
        if match := re.fullmatch(r"/schemas/ids/(\d+)", path):
            text = self.server.schemas.get(int(match[1]))
            if text is None:
                self._answer(404, {"error_code": 40403, "message": f"Schema {match[1]} not found."})
            else:
                self._answer(200, {"schema": text})
        elif match := re.fullmatch(r"/subjects/([^/]+)/versions/latest", path):
            versions = self.server.subjects.get(match[1])
            if not versions:
                self._answer(404, {"error_code": 40401, "message": "Subject not found."})
                return
            schema_id = versions[-1]
            self._answer(
                200,
                {
                    "subject": match[1],
                    "version": len(versions),
                    "id": schema_id,
                    "schema": self.server.schemas[schema_id],
                },
            )
        elif path == "/subjects":
            self._answer(200, sorted(self.server.subjects))
        else:
            self._answer(404, {"error_code": 404, "message": "no such path"})

    def do_POST(self) -> None:  # the handler protocol's name
        path = self.path.split("?")[0]
        self.server.requests.append(f"POST {path}")
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if match := re.fullmatch(r"/subjects/([^/]+)/versions", path):
            try:
                fastavro.parse_schema(json.loads(body["schema"]))
            except Exception:
                self._answer(422, {"error_code": 42201, "message": "Invalid schema"})
                return
            self._answer(200, {"id": self.server.add(match[1], body["schema"])})
        else:
            self._answer(404, {"error_code": 404, "message": "no such path"})


@pytest.fixture
def fake() -> Iterator[FakeRegistry]:
    server = FakeRegistry()
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def with_registry(url: str, work: Any) -> Any:
    async def go() -> Any:
        registry = SchemaRegistry(url, timeout_seconds=2)
        try:
            return await work(registry)
        finally:
            await registry.close()

    return asyncio.run(go())


def test_a_schema_id_is_fetched_once_for_concurrent_and_later_lookups(
    fake: FakeRegistry,
) -> None:
    schema_id = fake.add("orders-value", json.dumps(ORDER))

    async def work(registry: SchemaRegistry) -> list[Any]:
        first = await asyncio.gather(*(registry.schema_by_id(schema_id) for _ in range(10)))
        return [*first, await registry.schema_by_id(schema_id)]

    schemas = with_registry(fake.url, work)
    assert fake.requests == [f"GET /schemas/ids/{schema_id}"]
    assert all(schema is schemas[0] for schema in schemas)
    assert schemas[0]["name"] == "lhpipe.Order"


def test_an_unknown_schema_id_is_permanent_and_not_remembered(fake: FakeRegistry) -> None:
    async def work(registry: SchemaRegistry) -> None:
        for _ in range(2):
            with pytest.raises(RegistryPermanentError) as caught:
                await registry.schema_by_id(77)
            assert caught.value.code == "SCHEMA_NOT_FOUND"
            assert "schema id 77" in caught.value.message

    with_registry(fake.url, work)
    assert fake.requests == ["GET /schemas/ids/77"] * 2


def test_a_failing_registry_is_transient(fake: FakeRegistry) -> None:
    fake.failing = True

    async def work(registry: SchemaRegistry) -> None:
        with pytest.raises(RegistryTransientError) as caught:
            await registry.schema_by_id(1)
        assert caught.value.code == "HTTP_503"

    with_registry(fake.url, work)


def test_an_unreachable_registry_is_transient() -> None:
    server = FakeRegistry()
    url = server.url
    server.server_close()

    async def work(registry: SchemaRegistry) -> None:
        with pytest.raises(RegistryTransientError) as caught:
            await registry.schema_by_id(1)
        assert caught.value.code == "REGISTRY_UNAVAILABLE"
        assert "cannot be reached" in caught.value.message

    with_registry(url, work)


def test_registering_the_same_schema_again_costs_no_request(fake: FakeRegistry) -> None:
    async def work(registry: SchemaRegistry) -> tuple[int, int, int]:
        first = await registry.register("orders-value", ORDER)
        again = await registry.register("orders-value", ORDER)
        other = await registry.register("orders-value", {**ORDER, "name": "Order2"})
        return first, again, other

    first, again, other = with_registry(fake.url, work)
    assert first == again != other
    assert fake.requests.count("POST /subjects/orders-value/versions") == 2


def test_a_schema_the_registry_refuses_is_permanent(fake: FakeRegistry) -> None:
    async def work(registry: SchemaRegistry) -> None:
        with pytest.raises(RegistryPermanentError) as caught:
            await registry.register("orders-value", '{"type": "nonsense"}')
        assert caught.value.code == "HTTP_422"

    with_registry(fake.url, work)


def test_latest_gives_the_newest_version_of_a_subject(fake: FakeRegistry) -> None:
    fake.add("orders-value", json.dumps(ORDER))
    newest = fake.add("orders-value", json.dumps({**ORDER, "name": "OrderV2"}))

    async def work(registry: SchemaRegistry) -> Any:
        latest = await registry.latest("orders-value")
        by_id = await registry.schema_by_id(newest)
        return latest, by_id

    latest, by_id = with_registry(fake.url, work)
    assert (latest.subject, latest.version, latest.schema_id) == ("orders-value", 2, newest)
    assert latest.avro["name"] == "OrderV2"
    assert by_id is latest.schema
    assert f"GET /schemas/ids/{newest}" not in fake.requests


def test_an_unknown_subject_is_permanent_and_subjects_are_listed(fake: FakeRegistry) -> None:
    fake.add("orders-value", json.dumps(ORDER))

    async def work(registry: SchemaRegistry) -> list[str]:
        with pytest.raises(RegistryPermanentError) as caught:
            await registry.latest("order-value")
        assert caught.value.code == "SUBJECT_NOT_FOUND"
        return await registry.subjects()

    assert with_registry(fake.url, work) == ["orders-value"]


# ---------------------------------------------------------------------------------------------
# wire format
# ---------------------------------------------------------------------------------------------


def test_encode_writes_the_wire_format_that_decoding_reads() -> None:
    schema = parse_avro_schema(ORDER)
    value = {"id": "o-1", "amount": 12.5, "note": None}
    raw = encode(258, schema, value)
    assert raw[:5] == b"\x00\x00\x00\x01\x02"
    assert schema_id_of(raw) == 258
    assert fastavro.schemaless_reader(io.BytesIO(raw[5:]), schema, None) == value


def test_a_value_that_does_not_fit_the_schema_names_the_field() -> None:
    schema = parse_avro_schema(ORDER)
    with pytest.raises(PermanentError) as caught:
        encode(1, schema, {"id": "o-1", "amount": "twelve"})
    assert caught.value.code == "ENCODE"
    assert "lhpipe.Order.amount" in caught.value.message
