"""The Gateway end to end, against the real stack: a webhook with a Keycloak token becomes a
Kafka record whose schema id is the one registered in Apicurio, a pipeline `from webhook` turns
it into a WfRun with the right variables (read back from LittleHorse), and the same delivery
sent twice, by Idempotency-Key or by the provider's delivery id, creates one WfRun. A
direct-mode webhook runs its pipeline inside the request: the WfRun exists when 202 arrives.
"""

from __future__ import annotations

import functools
import io
import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import fastavro
import httpx
import pytest
from engine_run import (
    LhpipeRun,
    count_wf_runs,
    external_events_of,
    read_all,
    settled_wf_run_count,
    unique,
    wait_until,
    write_pipelines,
)
from gateway_support import (
    GITHUB_SECRET,
    STANDARD_SECRET,
    bearer,
    github_headers,
    header_map,
    keycloak_token,
    schema_id_of,
    standard_headers,
)
from lh import (
    lh_config,
    register_external_event_def,
    register_wf_spec,
    run_wf,
    variable_value,
)
from littlehorse.config import LHConfig
from littlehorse.model import WfRunId
from littlehorse.workflow import Workflow, WorkflowThread

from lhpipe.stack.addresses import StackAddresses

pytestmark = pytest.mark.integration

# The first request of a webhook fetches Keycloak's keys and waits for Kafka's acknowledgement;
# a direct-mode one runs a WfRun: httpx's default 5 s is short on a loaded machine.
HTTP_TIMEOUT_SECONDS = 30.0
http_post = functools.partial(httpx.post, timeout=HTTP_TIMEOUT_SECONDS)
http_get = functools.partial(httpx.get, timeout=HTTP_TIMEOUT_SECONDS)


@dataclass
class Running:
    url: str
    stack: StackAddresses
    config: LHConfig
    kyc_topic: str
    verdict_topic: str
    kyc_flow: str
    verdict_flow: str
    direct_flow: str
    paid_event: str
    run: LhpipeRun


def register_flows(config: LHConfig) -> tuple[str, str, str]:
    kyc, verdict, direct = unique("g2-kyc"), unique("g2-verdict"), unique("g2-direct")

    def applicant(wf: WorkflowThread) -> None:
        wf.declare_str("applicant_id")
        wf.declare_int("age")
        wf.declare_str("note")

    def approved(wf: WorkflowThread) -> None:
        wf.declare_bool("approved")

    register_wf_spec(config, Workflow(kyc, applicant))
    register_wf_spec(config, Workflow(verdict, approved))
    register_wf_spec(config, Workflow(direct, applicant))
    return kyc, verdict, direct


@pytest.fixture(scope="module")
def running(stack: StackAddresses, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    config = lh_config(stack)
    kyc_flow, verdict_flow, direct_flow = register_flows(config)
    kyc_topic, verdict_topic = unique("g2-kyc-applicants"), unique("g2-verdicts")
    paid_event, paid_topic = unique("g2-paid"), unique("g2-payments")
    register_external_event_def(config, paid_event)
    folder = write_pipelines(
        tmp_path_factory.mktemp("e2e"),
        f"""
schema Applicant {{ applicant_id: string  age: int  note: string? }}

webhook kyc_intake {{
  path = "/hooks/kyc"
  auth = oauth {{ issuer = env("OIDC_ISSUER")  audience = "lhpipe"  scopes = ["kyc:write"] }}
  body = Applicant
  topic = "{kyc_topic}"
}}

pipeline start_kyc {{
  from webhook kyc_intake
  run_wf "{kyc_flow}"
}}

webhook verdicts_in {{
  path = "/hooks/verdict"
  auth = hmac {{ preset = standard_webhooks  secret = env("VERIFIER_SECRET") }}
  topic = "{verdict_topic}"
}}

pipeline verdicts {{
  from webhook verdicts_in
  run_wf "{verdict_flow}" {{ variables {{ approved = value.approved }} }}
}}

webhook direct_intake {{
  path = "/hooks/direct"
  auth = hmac {{ preset = github  secret = env("GITHUB_SECRET") }}
  body = Applicant
}}

pipeline direct_kyc {{
  from webhook direct_intake
  run_wf "{direct_flow}" {{ variables {{ applicant_id = value.applicant_id  age = value.age }} }}
}}

webhook paid_in {{
  path = "/hooks/paid"
  auth = hmac {{ preset = standard_webhooks  secret = env("VERIFIER_SECRET") }}
  topic = "{paid_topic}"
}}

pipeline payments {{
  from webhook paid_in
  post_event "{paid_event}" {{ wf_run_id = value.order  content = value.status }}
}}
""",
    )
    env = {
        "OIDC_ISSUER": stack.keycloak_issuer,
        "VERIFIER_SECRET": STANDARD_SECRET,
        "GITHUB_SECRET": GITHUB_SECRET,
    }
    with LhpipeRun(folder, env=env) as run:
        run.wait_ready()
        yield Running(
            f"http://127.0.0.1:{run.port}",
            stack,
            config,
            kyc_topic,
            verdict_topic,
            kyc_flow,
            verdict_flow,
            direct_flow,
            paid_event,
            run,
        )
        assert run.terminate() == 0, run.log()


ALREADY_EXISTS = "lhpipe_lh_already_exists_total"


def wait_for_metric(run: LhpipeRun, at_least: float, **labels: str) -> float:
    """:data:`ALREADY_EXISTS` with ``labels`` once it is ``at_least``."""
    value: float = wait_until(
        lambda: (found := run.metric(ALREADY_EXISTS, **labels)) >= at_least and found,
        60,
        f"{ALREADY_EXISTS} {labels} to reach {at_least}",
    )
    return value


def wf_run_exists(config: LHConfig, wf_run_id: str) -> bool:
    try:
        config.stub().GetWfRun(WfRunId(id=wf_run_id))
    except Exception:
        return False
    return True


def test_a_keycloak_authenticated_webhook_becomes_one_wf_run_with_its_variables(
    running: Running,
) -> None:
    token = keycloak_token(running.stack, scope=running.stack.keycloak_scope)
    already = running.run.metric(ALREADY_EXISTS, pipeline="start_kyc")
    delivery = unique("kyc")  # the client's Idempotency-Key, reused on its retry
    body = json.dumps({"applicant_id": "ann-1", "age": 30, "note": "first"}).encode()
    headers = {**bearer(token), "idempotency-key": delivery}

    answers = [http_post(f"{running.url}/hooks/kyc", headers=headers, content=body) for _ in "12"]

    assert [(a.status_code, a.json()) for a in answers] == [(202, {"id": delivery})] * 2
    # Both requests are records (Kafka holds what it acknowledged), with the same id and key.
    records = read_all(running.stack, running.kyc_topic, expected=2)
    assert len(records) == 2
    for record in records:
        assert record.key() == delivery.encode()
        headers_of = header_map(record)
        assert headers_of["lhpipe.webhook"] == b"kyc_intake"
        assert headers_of["lhpipe.webhook.id"] == delivery.encode()
        assert headers_of["content-type"] == b"application/vnd.apache.avro+binary"
    # The schema id in the record is the one registered under <topic>-value in Apicurio.
    value = records[0].value()
    schema_id = schema_id_of(value)
    registry = running.stack.ccompat_url
    latest = http_get(f"{registry}/subjects/{running.kyc_topic}-value/versions/latest").json()
    assert latest["id"] == schema_id
    by_id = json.loads(http_get(f"{registry}/schemas/ids/{schema_id}").json()["schema"])
    assert [f["name"] for f in by_id["fields"]] == ["applicant_id", "age", "note"]
    decoded = fastavro.schemaless_reader(io.BytesIO(value[5:]), fastavro.parse_schema(by_id))
    assert decoded == {"applicant_id": "ann-1", "age": 30, "note": "first"}
    # One WfRun, named by the delivery (the default key), with the body's fields as variables:
    # the second record's run_wf is answered ALREADY_EXISTS.
    wait_until(lambda: wf_run_exists(running.config, delivery), 60, "the WfRun")
    assert wait_for_metric(running.run, already + 1, pipeline="start_kyc") == already + 1
    assert settled_wf_run_count(running.config, running.kyc_flow, 1) == 1
    assert variable_value(running.config, delivery, "applicant_id") == "ann-1"
    assert variable_value(running.config, delivery, "age") == 30
    assert variable_value(running.config, delivery, "note") == "first"


def test_a_request_without_any_id_gets_a_new_uuid_and_its_own_wf_run(running: Running) -> None:
    token = keycloak_token(running.stack, scope=running.stack.keycloak_scope)
    before = count_wf_runs(running.config, running.kyc_flow)
    body = json.dumps({"applicant_id": "bob-2", "age": 41}).encode()

    answer = http_post(f"{running.url}/hooks/kyc", headers=bearer(token), content=body)

    assert answer.status_code == 202
    new_id = answer.json()["id"]
    assert str(uuid.UUID(new_id)) == new_id
    wait_until(lambda: wf_run_exists(running.config, new_id), 60, "the WfRun")
    assert variable_value(running.config, new_id, "applicant_id") == "bob-2"
    assert variable_value(running.config, new_id, "note") is None
    assert settled_wf_run_count(running.config, running.kyc_flow, before + 1) == before + 1


def test_a_providers_retry_of_the_same_delivery_creates_one_wf_run(running: Running) -> None:
    already = running.run.metric(ALREADY_EXISTS, pipeline="verdicts")
    message_id = f"msg_{uuid.uuid4().hex}"  # a Standard Webhooks id, underscore included
    body = b'{"approved": true}'
    now = int(time.time())

    first = http_post(
        f"{running.url}/hooks/verdict",
        headers=standard_headers(body, message_id, timestamp=now),
        content=body,
    )
    # The provider's retry is signed again, with a later timestamp.
    retry = http_post(
        f"{running.url}/hooks/verdict",
        headers=standard_headers(body, message_id, timestamp=now + 1),
        content=body,
    )

    assert (first.status_code, retry.status_code) == (202, 202)
    assert first.json() == retry.json() == {"id": message_id}
    records = read_all(running.stack, running.verdict_topic, expected=2)
    assert [header_map(r)["lhpipe.webhook.id"] for r in records] == [message_id.encode()] * 2
    # The default key is the webhook id; run_wf names the WfRun by it, made a valid
    # LittleHorse id (delivery.md: the webhook id plays the role of the record's position).
    assert [r.key() for r in records] == [message_id.encode()] * 2
    wf_run_id = message_id.replace("_", "-")
    wait_until(lambda: wf_run_exists(running.config, wf_run_id), 60, "the WfRun")
    assert wait_for_metric(running.run, already + 1, pipeline="verdicts") == already + 1
    assert settled_wf_run_count(running.config, running.verdict_flow, 1) == 1
    assert variable_value(running.config, wf_run_id, "approved") is True


def test_a_providers_retry_posts_one_external_event(running: Running) -> None:
    # post_event's guid, unwritten, comes from the webhook id, not from the record's offset:
    # the retry is a second record at another offset, but the same event (delivery.md).
    def waits_for_payment(wf: WorkflowThread) -> None:
        wf.wait_for_event(running.paid_event)

    wf_spec = register_wf_spec(running.config, Workflow(unique("g2-order"), waits_for_payment))
    order = run_wf(running.config, wf_spec)
    message_id = f"msg_{uuid.uuid4().hex}"
    body = json.dumps({"order": order, "status": "paid"}).encode()

    now = int(time.time())
    answers = [
        http_post(
            f"{running.url}/hooks/paid",
            # The retry is signed again, with a later timestamp.
            headers=standard_headers(body, message_id, timestamp=now + attempt),
            content=body,
        ).status_code
        for attempt in (0, 1)
    ]

    assert answers == [202, 202]
    wait_until(lambda: running.run.stats("payments")["acknowledged"] == 2, 60, "both records done")
    events = external_events_of(running.config, order).results
    assert [e.id.guid for e in events] == [f"payments-{message_id.replace('_', '-').lower()}"]


def test_a_direct_mode_webhook_answers_once_its_wf_run_exists(running: Running) -> None:
    already = running.run.metric(ALREADY_EXISTS, pipeline="direct_kyc")
    delivery = str(uuid.uuid4())
    body = json.dumps({"applicant_id": "cy-3", "age": 25}).encode()

    first = http_post(
        f"{running.url}/hooks/direct", headers=github_headers(body, delivery), content=body
    )

    assert first.status_code == 202 and first.json() == {"id": delivery}
    assert wf_run_exists(running.config, delivery)  # no waiting: 202 came after LittleHorse's
    assert variable_value(running.config, delivery, "applicant_id") == "cy-3"
    assert variable_value(running.config, delivery, "age") == 25
    again = http_post(
        f"{running.url}/hooks/direct", headers=github_headers(body, delivery), content=body
    )
    assert again.status_code == 202
    # Answered after LittleHorse's ALREADY_EXISTS: no second WfRun.
    assert running.run.metric(ALREADY_EXISTS, pipeline="direct_kyc") == already + 1
    assert settled_wf_run_count(running.config, running.direct_flow, 1) == 1


def test_a_wfrunid_header_beside_a_signed_body_does_not_choose_the_wf_run(
    running: Running,
) -> None:
    # The header is signed by nothing (issue 12, item 5): the delivery id decides, as without it.
    # (Before, this header chose the id, and `bad_id_` made the request a 422.)
    delivery = str(uuid.uuid4())
    body = json.dumps({"applicant_id": "dz-4", "age": 31}).encode()
    victim = str(uuid.uuid4())
    headers = {**github_headers(body, delivery), "wfRunId": victim, "guid": "g-1"}

    answer = http_post(f"{running.url}/hooks/direct", headers=headers, content=body)

    assert answer.status_code == 202 and answer.json() == {"id": delivery}
    assert wf_run_exists(running.config, delivery)
    assert variable_value(running.config, delivery, "applicant_id") == "dz-4"
    assert not wf_run_exists(running.config, victim)
