"""Registry schemas with every connection secured (``lhpipe stack up --secure``,
docs/security.md): the secure Apicurio over HTTPS, needing tokens of the Keycloak realm (OAuth
client credentials, or basic auth with the client's id and secret), and Kafka over SASL_SSL.

- a webhook with a schema body writes Avro in the registry wire format (the schema registered
  on the secure registry) and a second pipeline reads it back with the schema (the writer
  schema fetched by id from the secure registry) and writes JSON: every request once;
- ``to topic`` with a schema, through a client that may only read the registry: paused with one
  line, nothing dead-lettered; restarted with a client that may register, every record once.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import urllib.error
import urllib.request
from pathlib import Path

import fastavro
import pytest
from engine_run import (
    LhpipeRun,
    create_topic,
    produce,
    read_all,
    unique,
    wait_until,
    write_pipelines,
)
from test_secure_kafka import SECRETS, assert_no_secret, every_output, paused_view

from lhpipe.core.avro.wire import parse_avro_schema
from lhpipe.stack import addresses as at
from lhpipe.stack.addresses import StackAddresses
from lhpipe.stack.certs import StackCerts
from lhpipe.stack.env import kafka_secure_settings, registry_secure_settings

pytestmark = pytest.mark.integration

HOOK_SECRET = "hook-signing-secret-991"
APPLICANT = {
    "type": "record",
    "name": "Applicant",
    "fields": [{"name": "id", "type": "string"}, {"name": "age", "type": "int"}],
}


def settings(certs: StackCerts, registry_auth: str = "oauth") -> dict[str, str]:
    return {
        **kafka_secure_settings(certs),
        **registry_secure_settings(certs, registry_auth),
        "HOOK_SECRET": HOOK_SECRET,
    }


def post(port: int, body: bytes, delivery: str) -> int:
    signature = "sha256=" + hmac.new(HOOK_SECRET.encode(), body, hashlib.sha256).hexdigest()
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/hooks/applicants",
        data=body,
        headers={
            "Content-Type": "application/json",
            "X-Hub-Signature-256": signature,
            "X-GitHub-Delivery": delivery,
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


@pytest.mark.parametrize("registry_auth", ["oauth", "basic"])
def test_a_webhook_writes_avro_through_the_secure_registry_and_a_pipeline_reads_it_back(
    stack: StackAddresses, secure_stack: StackCerts, tmp_path: Path, registry_auth: str
) -> None:
    avro_topic, json_topic = unique("sec-avro"), unique("sec-json")
    create_topic(stack, json_topic)
    folder = write_pipelines(
        tmp_path,
        f"""
schema Applicant {{
  id: string
  age: int
}}

webhook applicants {{
  path = "/hooks/applicants"
  auth = hmac {{ preset = github  secret = env("HOOK_SECRET") }}
  body = Applicant
  topic = "{avro_topic}"
}}

pipeline back {{
  from topic "{avro_topic}" {{ value = Applicant }}
  to topic "{json_topic}" {{ value = {{ id = value.id, age = value.age }} }}
}}
""",
    )
    bodies = [json.dumps({"id": f"a-{n}", "age": 20 + n % 50}).encode() for n in range(40)]

    with LhpipeRun(folder, env=settings(secure_stack, registry_auth)) as run:
        run.wait_ready()
        statuses = [post(run.port, body, f"d-{n}") for n, body in enumerate(bodies)]
        copied = read_all(stack, json_topic, len(bodies), timeout=120)
        written = read_all(stack, avro_topic, len(bodies))
        output = every_output(run)
        assert run.terminate() == 0, run.log()

    assert statuses == [202] * len(bodies)
    assert sorted(json.loads(r.value())["id"] for r in copied) == sorted(
        f"a-{n}" for n in range(40)
    )
    parsed = parse_avro_schema(APPLICANT)
    for record in written:
        value = record.value()
        assert value[:1] == b"\x00"  # the magic byte, then the secure registry's schema id
        decoded = fastavro.schemaless_reader(io.BytesIO(value[5:]), parsed, None)
        assert decoded["id"].startswith("a-")
    assert_no_secret(output, HOOK_SECRET, *SECRETS)


def test_a_client_that_may_only_read_pauses_to_topic_and_the_right_client_resumes_it(
    stack: StackAddresses, secure_stack: StackCerts, tmp_path: Path
) -> None:
    source, target, dead = unique("sec-src"), unique("sec-out"), unique("sec-dead")
    create_topic(stack, source)
    create_topic(stack, target)
    folder = write_pipelines(
        tmp_path,
        f"""
schema Item {{
  id: string
}}

pipeline export {{
  from topic "{source}" {{ value = json }}
  to topic "{target}" {{ schema = Item  value = {{ id = value.id }} }}
  on_error {{ dead_letter = "{dead}" }}
}}
""",
    )
    produce(stack, source, ((None, json.dumps({"id": f"i-{n}"}).encode(), ()) for n in range(30)))
    readonly = {
        **settings(secure_stack),
        "LHPIPE_REGISTRY_BEARER_AUTH_CLIENT_ID": at.READONLY_CLIENT_ID,
        "LHPIPE_REGISTRY_BEARER_AUTH_CLIENT_SECRET": at.READONLY_CLIENT_SECRET,
    }

    with LhpipeRun(folder, env=readonly) as run:
        view = wait_until(lambda: paused_view(run, "export"), 90, "the pipeline to be paused")
        detail = str(view["detail"])
        output = every_output(run)
        assert run.terminate() == 0, run.log()

    assert "the schema registry denied lhpipe access (HTTP 403)" in detail, detail
    assert "\n" not in detail
    assert read_all(stack, target, 0, timeout=10) == []
    assert read_all(stack, dead, 0, timeout=10) == []
    assert_no_secret(output, at.READONLY_CLIENT_SECRET, *SECRETS)

    with LhpipeRun(folder, env=settings(secure_stack)) as run:
        run.wait_ready()
        read_all(stack, target, 30, timeout=120)
        assert run.terminate() == 0, run.log()

    values = read_all(stack, target, 30)
    schema = parse_avro_schema(
        {"type": "record", "name": "Item", "fields": [{"name": "id", "type": "string"}]}
    )
    ids = sorted(
        fastavro.schemaless_reader(io.BytesIO(r.value()[5:]), schema, None)["id"] for r in values
    )
    assert ids == sorted(f"i-{n}" for n in range(30))
    assert read_all(stack, dead, 0, timeout=10) == []
