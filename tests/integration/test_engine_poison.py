"""Poison records (not JSON, a wrong schema id, a missing field, a bad id, an undeclared
variable) land in the dead-letter topic byte for byte with the error envelope, and the good
records around them still become WfRuns."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import fastavro
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
from lh import lh_config, register_wf_spec, variable_value
from littlehorse.workflow import Workflow, WorkflowThread

from lhpipe.clients.registry import SchemaRegistry
from lhpipe.core.avro.wire import encode
from lhpipe.stack.addresses import StackAddresses

pytestmark = pytest.mark.integration

PERSON_AVRO = {
    "type": "record",
    "name": "Person",
    "namespace": "lhpipe",
    "fields": [{"name": "name", "type": "string"}],
}
# Headers that are not valid UTF-8 must come back exactly as they were.
ODD_HEADERS = [("trace", b"\xff\x00\x01"), ("trace", b"second"), ("source", b"test")]


def _register_person(stack: StackAddresses) -> int:
    async def register() -> int:
        registry = SchemaRegistry(stack.ccompat_url)
        try:
            return await registry.register(unique("e3-person") + "-value", PERSON_AVRO)
        finally:
            await registry.close()

    return asyncio.run(register())


def _headers(message: Any) -> list[tuple[str, bytes]]:
    return list(message.headers() or [])


def test_poison_records_are_dead_lettered_with_the_envelope_and_good_ones_go_on(
    stack: StackAddresses, tmp_path: Path
) -> None:
    config = lh_config(stack)
    wf_name = unique("e3-person")
    explicit, implicit, avro = unique("e3-explicit"), unique("e3-implicit"), unique("e3-avro")
    dlq = unique("e3-poison-dlq")

    def person(wf: WorkflowThread) -> None:
        wf.declare_str("name")

    register_wf_spec(config, Workflow(wf_name, person))
    for topic in (explicit, implicit, avro):
        create_topic(stack, topic)
    schema_id = _register_person(stack)
    parsed = fastavro.parse_schema(PERSON_AVRO)
    folder = write_pipelines(
        tmp_path / "pipelines",
        f"""
schema Person {{ name: string }}

pipeline explicit {{
  from topic "{explicit}" {{ value = json }}
  run_wf "{wf_name}" {{ variables {{ name = value.name }} }}
  on_error {{ dead_letter = "{dlq}" }}
}}

pipeline implicit {{
  from topic "{implicit}" {{ value = json }}
  run_wf "{wf_name}"
  on_error {{ dead_letter = "{dlq}" }}
}}

pipeline people_avro {{
  from topic "{avro}" {{ value = Person }}
  run_wf "{wf_name}"
  on_error {{ dead_letter = "{dlq}" }}
}}
""",
    )

    # WfRun ids are global in LittleHorse: unique per run, or a rerun would find them taken.
    run_tag = unique("run")

    def good(name: str) -> tuple[bytes, bytes, list[tuple[str, bytes]]]:
        wf_id = f"{name}-{run_tag}"
        return wf_id.encode(), json.dumps({"name": wf_id}).encode(), []

    not_json = (b"p-not-json", b"{oops, not json", ODD_HEADERS)
    missing_field = (b"p-missing", b'{"nom": "x"}', ODD_HEADERS)
    bad_id = (b"bad id!", b'{"name": "x"}', ODD_HEADERS)
    undeclared = (b"p-undeclared", b'{"name": "x", "shoe_size": 44}', ODD_HEADERS)
    wrong_schema = (b"p-wrong-schema", b"\x00\x7f\xff\xff\xf0\x06abc", ODD_HEADERS)
    produce(
        stack,
        explicit,
        [good("e-1"), not_json, good("e-2"), missing_field, good("e-3"), bad_id, good("e-4")],
    )
    produce(stack, implicit, [good("i-1"), undeclared, good("i-2")])
    produce(
        stack,
        avro,
        [
            (f"a-1-{run_tag}".encode(), encode(schema_id, parsed, {"name": "a-1"}), []),
            wrong_schema,
            (f"a-2-{run_tag}".encode(), encode(schema_id, parsed, {"name": "a-2"}), []),
        ],
    )

    with LhpipeRun(folder) as run:
        run.wait_ready()
        wait_until(
            lambda: (
                run.stats("explicit")["acknowledged"] == 7
                and run.stats("implicit")["acknowledged"] == 3
                and run.stats("people_avro")["acknowledged"] == 3
            ),
            90,
            "every record to be acknowledged",
        )
        answer = run.readyz()
        assert answer is not None and answer[0] == 200  # poison does not stop a pipeline
        assert run.terminate() == 0, run.log()

    assert settled_wf_run_count(config, wf_name, 8) == 8
    assert variable_value(config, f"a-2-{run_tag}", "name") == "a-2"
    assert committed(stack, "lhpipe-explicit", explicit) == [7]

    # Every dead letter read, in a list: a poison record written twice must show as two.
    letters = read_all(stack, dlq, expected=5)
    expected = {
        # key: (original, pipeline, target, code, source topic, offset)
        b"p-not-json": (not_json, "explicit", "decode", "DECODE", explicit, 1),
        b"p-missing": (missing_field, "explicit", f"run_wf:{wf_name}", "EXPRESSION", explicit, 3),
        b"bad id!": (bad_id, "explicit", f"run_wf:{wf_name}", "BAD_ID", explicit, 5),
        b"p-undeclared": (
            undeclared,
            "implicit",
            f"run_wf:{wf_name}",
            "UNDECLARED_VARIABLE",
            implicit,
            1,
        ),
        b"p-wrong-schema": (wrong_schema, "people_avro", "decode", "SCHEMA_NOT_FOUND", avro, 1),
    }
    keys = sorted(m.key() for m in letters)
    assert keys == sorted(expected), keys  # each poison record exactly once, nothing else
    for message in letters:
        original, pipeline, target, code, topic, offset = expected[message.key()]
        assert message.value() == original[1]
        headers = _headers(message)
        assert headers[: len(ODD_HEADERS)] == ODD_HEADERS
        envelope = {name: value.decode() for name, value in headers[len(ODD_HEADERS) :]}
        assert envelope.pop("lhpipe.error.message")
        first, last = envelope.pop("lhpipe.first.attempt"), envelope.pop("lhpipe.last.attempt")
        assert first.endswith("Z") and first <= last
        assert envelope == {
            "lhpipe.error.class": "permanent",
            "lhpipe.error.code": code,
            "lhpipe.pipeline": pipeline,
            "lhpipe.target": target,
            "lhpipe.attempts": "1",
            "lhpipe.source.topic": topic,
            "lhpipe.source.partition": "0",
            "lhpipe.source.offset": str(offset),
        }, message.key()
