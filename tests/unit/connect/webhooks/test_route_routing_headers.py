"""Issue 12, item 5: the headers of a signed direct-mode request never choose its WfRun, guid or
correlation key; only the webhook's own id rules do (docs/webhooks.md, "Headers that never steer
a request"). Driven through the Gateway's real route with a fake LittleHorse sender."""

from __future__ import annotations

import pytest
from test_route import SECRET, FakeClients, FakeProducer, call, gateway, github, route_of

from lhpipe.core.plans import CorrelatePlan, PostEventPlan, RunWfPlan
from lhpipe.core.record import KafkaOrigin, Record

DELIVERY = "72d3162e-cc78-11e3-81ab-4c9367dc0958"
BODY = b'{"order": 7}'
STEERING = {"wfrunid": "someone-elses-run", "guid": "replayed-guid", "correlationid": "victim"}


def direct(targets: str) -> str:
    return (
        f'webhook w {{ path = "/h"  auth = hmac {{ preset = github  secret = "{SECRET}" }}  '
        "body = json }\n"
        f"pipeline p {{ from webhook w  {targets} }}\n"
    )


@pytest.fixture
def clients() -> FakeClients:
    return FakeClients()


@pytest.fixture
def producer() -> FakeProducer:
    return FakeProducer()


def test_a_wfrunid_header_beside_a_signed_body_does_not_choose_the_wf_run(
    clients: FakeClients, producer: FakeProducer
) -> None:
    route = route_of(gateway(direct('run_wf "flow" {}  post_event "paid" {}'), clients, producer))

    answer = call(route, headers={**github(BODY), **STEERING}, chunks=[BODY])

    assert answer is not None and answer.status == 202
    run, event = clients.sender_.plans
    # The webhook's default key (the delivery id) decides, as without the header.
    assert isinstance(run, RunWfPlan) and run.wf_run_id == DELIVERY
    assert isinstance(event, PostEventPlan)
    assert event.wf_run_id == DELIVERY
    assert event.guid == f"p-{DELIVERY}"


def test_a_correlationid_header_does_not_choose_the_correlation_key(
    clients: FakeClients, producer: FakeProducer
) -> None:
    route = route_of(gateway(direct('correlate "verdict" {}'), clients, producer))

    answer = call(route, headers={**github(BODY), **STEERING}, chunks=[BODY])

    assert answer is not None and answer.status == 202
    [plan] = clients.sender_.plans
    assert isinstance(plan, CorrelatePlan) and plan.key == DELIVERY


def test_a_webhook_that_declares_it_may_still_take_the_id_from_a_header(
    clients: FakeClients, producer: FakeProducer
) -> None:
    route = route_of(
        gateway(direct('run_wf "flow" { id = headers["wfRunId"] }'), clients, producer)
    )

    answer = call(route, headers={**github(BODY), "wfrunid": "chosen-1"}, chunks=[BODY])

    assert answer is not None and answer.status == 202
    [plan] = clients.sender_.plans
    assert isinstance(plan, RunWfPlan) and plan.wf_run_id == "chosen-1"


def test_kafka_records_keep_the_sink_connectors_header_rules() -> None:
    headers = (("wfRunId", b"wf-1"), ("guid", b""), ("correlationId", b"c-1"))
    record = Record(KafkaOrigin("t", 0, 1), None, None, headers)
    assert record.routing_header("wfRunId") == "wf-1"
    assert record.routing_header("guid") is None  # empty counts as not given
    assert record.routing_header("correlationId") == "c-1"
