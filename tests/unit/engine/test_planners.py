"""What each target would send, with delivery.md's id, guid and key rules."""

from __future__ import annotations

from typing import Any

import pytest

from lhpipe.core.errors import BadIdError, ExpressionError, PermanentError
from lhpipe.core.plans import (
    CorrelatePlan,
    FilePlan,
    HttpPlan,
    LogPlan,
    Plan,
    PostEventPlan,
    RunWfPlan,
    TopicPlan,
)
from lhpipe.core.record import KafkaOrigin, Record, WebhookOrigin
from lhpipe.core.steps import compile_steps, initial_env
from lhpipe.kinds import compile_planner, load_texts

ORIGIN = KafkaOrigin("orders.v2_eu", 3, 42)


def plan(
    target: str,
    value: Any = None,
    *,
    key: str | None = None,
    headers: dict[str, str] | None = None,
    origin: KafkaOrigin | WebhookOrigin = ORIGIN,
    pipeline: str = "start_orders",
) -> Plan:
    """The plan of ``target`` in a `json` pipeline for one record."""
    source = f'pipeline {pipeline} {{\n  from topic "orders"\n  {target}\n}}\n'
    result = load_texts({"p.lhp": source})
    assert result.program is not None, [d.message for d in result.diagnostics]
    info = result.program.pipelines[pipeline]
    record = Record(
        origin=origin,
        key=None if key is None else key.encode(),
        value=None,
        headers=tuple((k, v.encode()) for k, v in (headers or {}).items()),
        timestamp_ms=1_714_564_800_000,
    )
    env = compile_steps(info, result.program)(initial_env(record, key, value))
    assert env is not None
    return compile_planner(info.targets[0], info, result.program)(env, record)


ORDER = {"order_id": "o-7", "amount": 12.5, "customer": {"name": "Ann"}}


# --- run_wf -------------------------------------------------------------------------------


def test_run_wf_id_written_wins() -> None:
    result = plan(
        'run_wf "order" { id = "order-${value.order_id}" }',
        ORDER,
        key="k-1",
        headers={"wfRunId": "h-1"},
    )
    assert isinstance(result, RunWfPlan)
    assert result.wf_run_id == "order-o-7"


def test_run_wf_id_from_header_then_key_then_generated() -> None:
    target = 'run_wf "order"'
    header = plan(target, ORDER, key="k-1", headers={"wfRunId": "h-1"})
    from_key = plan(target, ORDER, key="k-1")
    generated = plan(target, ORDER)
    assert isinstance(header, RunWfPlan)
    assert isinstance(from_key, RunWfPlan)
    assert isinstance(generated, RunWfPlan)
    assert (header.wf_run_id, from_key.wf_run_id) == ("h-1", "k-1")
    # lower case, `_` and `.` turned into `-`
    assert generated.wf_run_id == "start-orders-orders-v2-eu-3-42"


def test_run_wf_written_id_that_is_null_falls_back_to_the_defaults() -> None:
    result = plan('run_wf "order" { id = value.missing ?? null }', ORDER, key="k-1")
    assert isinstance(result, RunWfPlan)
    assert result.wf_run_id == "k-1"


def test_run_wf_empty_key_counts_as_no_key() -> None:
    result = plan('run_wf "order"', ORDER, key="")
    assert isinstance(result, RunWfPlan)
    assert result.wf_run_id == "start-orders-orders-v2-eu-3-42"


@pytest.mark.parametrize(
    ("target", "key", "headers", "source"),
    [
        ('run_wf "order"', "ann_1", {}, 'the record key "ann_1"'),
        ('run_wf "order"', None, {"wfRunId": "-x"}, 'the wfRunId header "-x"'),
        ('run_wf "order" { id = value.order_id + "!" }', None, {}, 'the written `id` "o-7!"'),
    ],
)
def test_run_wf_bad_id_is_refused_before_any_call(
    target: str, key: str | None, headers: dict[str, str], source: str
) -> None:
    with pytest.raises(BadIdError) as caught:
        plan(target, ORDER, key=key, headers=headers)
    assert caught.value.code == "BAD_ID"
    assert source in caught.value.message
    assert "[A-Za-z0-9]([-A-Za-z0-9]*[A-Za-z0-9])?" in caught.value.message


def test_generated_id_that_is_still_invalid_is_refused() -> None:
    with pytest.raises(BadIdError, match="the generated id"):
        plan('run_wf "order"', ORDER, origin=KafkaOrigin("orders!", 0, 1))


def test_webhook_id_stands_in_for_the_kafka_coordinates() -> None:
    result = plan('run_wf "order"', ORDER, origin=WebhookOrigin("stripe", "evt_1Ab.C"))
    assert isinstance(result, RunWfPlan)
    assert result.wf_run_id == "start-orders-evt-1ab-c"
    result = plan('run_wf "order"', ORDER, origin=WebhookOrigin("hook", "order:7/try 2"))
    assert isinstance(result, RunWfPlan)
    assert result.wf_run_id == "start-orders-order-7-try-2"


def test_a_gateway_record_generates_ids_from_its_webhook_id_not_its_offset() -> None:
    # A provider's retry of a delivery is a second record at another offset: its guid must
    # be the same (delivery.md: the webhook id plays the role of topic-partition-offset).
    headers = {"lhpipe.webhook.id": "msg_2KWP", "wfRunId": "wf-1"}
    guids = {
        plan(
            'post_event "paid"', ORDER, headers=headers, origin=KafkaOrigin("verdicts", 0, offset)
        ).guid  # type: ignore[union-attr]
        for offset in (10, 11)
    }
    assert guids == {"start-orders-msg-2kwp"}
    plain = plan('post_event "paid"', ORDER, headers={"wfRunId": "wf-1"})
    assert isinstance(plain, PostEventPlan) and plain.guid.startswith("start-orders-orders-")


@pytest.mark.parametrize(
    ("webhook_id", "wf_run_id"),
    [
        ("72d3162e-cc78-11e3-81ab-4c9367dc0958", "72d3162e-cc78-11e3-81ab-4c9367dc0958"),
        ("msg_2KWPBgLlAfxdpx2AI54pPJ85f4W", "msg-2KWPBgLlAfxdpx2AI54pPJ85f4W"),
        ("evt_1NG8Du2eZvKYlo2CUI79vXWy", "evt-1NG8Du2eZvKYlo2CUI79vXWy"),
        ("Order-42", "Order-42"),
        ("order:7/attempt.2", "order-7-attempt-2"),
    ],
)
def test_a_key_that_is_the_webhook_id_is_made_a_valid_run_wf_id(
    webhook_id: str, wf_run_id: str
) -> None:
    headers = {"lhpipe.webhook.id": webhook_id}
    result = plan('run_wf "order"', ORDER, key=webhook_id, headers=headers)
    assert isinstance(result, RunWfPlan) and result.wf_run_id == wf_run_id
    direct = plan('run_wf "order"', ORDER, key=webhook_id, origin=WebhookOrigin("w", webhook_id))
    assert isinstance(direct, RunWfPlan) and direct.wf_run_id == wf_run_id


def test_post_event_makes_a_webhook_default_key_a_valid_wf_run_id_too() -> None:
    headers = {"lhpipe.webhook.id": "evt_1NG8"}
    result = plan('post_event "paid"', ORDER, key="evt_1NG8", headers=headers)
    assert isinstance(result, PostEventPlan) and result.wf_run_id == "evt-1NG8"


def test_a_webhook_id_without_a_letter_or_digit_is_hashed() -> None:
    first = plan('run_wf "order"', ORDER, origin=WebhookOrigin("hook", "***"))
    second = plan('run_wf "order"', ORDER, origin=WebhookOrigin("hook", "+++"))
    assert isinstance(first, RunWfPlan) and isinstance(second, RunWfPlan)
    assert first.wf_run_id.startswith("start-orders-h") and len(first.wf_run_id) == 46
    assert first.wf_run_id != second.wf_run_id


def test_any_other_key_is_used_as_it_is() -> None:
    with pytest.raises(BadIdError, match='the record key "msg_2KWP"'):
        plan('run_wf "order"', ORDER, key="msg_2KWP", headers={"lhpipe.webhook.id": "other"})


def test_run_wf_without_variables_takes_each_top_level_field() -> None:
    result = plan('run_wf "order"', ORDER, key="k")
    assert isinstance(result, RunWfPlan)
    assert result.variables == ORDER
    empty = plan('run_wf "order"', None, key="k")
    assert isinstance(empty, RunWfPlan)
    assert empty.variables == {}


def test_run_wf_without_variables_needs_a_record_value() -> None:
    with pytest.raises(PermanentError, match="the value is a list"):
        plan('run_wf "order"', [1, 2], key="k")


def test_run_wf_variables_versions_and_parent() -> None:
    result = plan(
        'run_wf "refund" { parent = "shop_order-7"  major_version = 2  revision = 0\n'
        "  variables { name = value.customer.name  amount = value.amount * 2 } }",
        ORDER,
        key="k",
    )
    assert result == RunWfPlan(
        wf_spec="refund",
        wf_run_id="k",
        variables={"name": "Ann", "amount": 25.0},
        major_version=2,
        revision=0,
        parent_wf_run_id="shop_order-7",
    )


def test_run_wf_parent_parts_are_checked() -> None:
    with pytest.raises(BadIdError, match='its part "order-"'):
        plan('run_wf "refund" { parent = "shop_${value.p}" }', {"p": "order-"}, key="k")


def test_run_wf_version_must_be_a_whole_number() -> None:
    with pytest.raises(ExpressionError, match="`major_version` must be a whole number"):
        plan('run_wf "order" { major_version = value.v }', {"v": "2"}, key="k")


# --- post_event ---------------------------------------------------------------------------


def test_post_event_defaults() -> None:
    result = plan('post_event "paid"', ORDER, key="order-7")
    assert result == PostEventPlan(
        external_event_def="paid",
        wf_run_id="order-7",
        guid="start-orders-orders-v2-eu-3-42",  # generated, never the key
        content=ORDER,
    )


def test_post_event_headers_come_before_the_key() -> None:
    result = plan('post_event "paid"', ORDER, key="k", headers={"wfRunId": "w", "guid": "g-1"})
    assert isinstance(result, PostEventPlan)
    assert (result.wf_run_id, result.guid) == ("w", "g-1")


def test_post_event_written_settings_win() -> None:
    result = plan(
        'post_event "paid" { wf_run_id = value.order_id  guid = "pay-1"  content = value.amount\n'
        "  thread_run_number = 1  node_run_position = 3 }",
        ORDER,
        key="k",
        headers={"wfRunId": "w", "guid": "g-1"},
    )
    assert result == PostEventPlan("paid", "o-7", "pay-1", 12.5, 1, 3)


def test_post_event_child_wf_run_from_key_or_header() -> None:
    from_key = plan('post_event "paid"', ORDER, key="order-7_refund-1")
    assert isinstance(from_key, PostEventPlan)
    assert from_key.wf_run_id == "order-7_refund-1"
    with pytest.raises(BadIdError, match='wfRunId header "a__b"'):
        plan('post_event "paid"', ORDER, headers={"wfRunId": "a__b"})


def test_post_event_needs_a_wf_run_id() -> None:
    with pytest.raises(PermanentError, match="no WfRun id"):
        plan('post_event "paid"', ORDER)


def test_post_event_guid_header_is_checked() -> None:
    with pytest.raises(BadIdError, match='the guid header "g_1"'):
        plan('post_event "paid"', ORDER, key="k", headers={"guid": "g_1"})


# --- correlate ----------------------------------------------------------------------------


def test_correlate_key_precedence_and_content() -> None:
    written = plan('correlate "paid" { key = value.order_id }', ORDER, key="k")
    header = plan('correlate "paid"', ORDER, key="k", headers={"correlationId": "c-1"})
    from_key = plan('correlate "paid"', ORDER, key="ann@example.com")
    assert written == CorrelatePlan("paid", "o-7", ORDER)
    assert isinstance(header, CorrelatePlan)
    assert header.key == "c-1"
    # Correlation keys are any text: not checked as ids.
    assert isinstance(from_key, CorrelatePlan)
    assert from_key.key == "ann@example.com"


def test_correlate_needs_a_key() -> None:
    with pytest.raises(PermanentError, match="no correlation key"):
        plan('correlate "paid"', ORDER)


# --- exports ------------------------------------------------------------------------------


def test_to_topic_defaults_keep_key_and_value() -> None:
    assert plan('to topic "out"', ORDER, key="k-1") == TopicPlan("out", "k-1", ORDER, {})


def test_to_topic_written_key_value_headers() -> None:
    result = plan(
        'to topic "out" { key = value.order_id  value = { id = value.order_id }\n'
        "  headers { source = record.topic  n = 3  gone = value.nothing ?? null } }",
        ORDER,
        key="k-1",
    )
    assert result == TopicPlan("out", "o-7", {"id": "o-7"}, {"source": "orders.v2_eu", "n": "3"})


def test_to_http() -> None:
    result = plan(
        'to http "https://crm.example.com/orders/${value.order_id}" {\n'
        '  method = "PUT"  headers { x_order = value.order_id }  body = value.customer }',
        ORDER,
    )
    assert result == HttpPlan(
        "https://crm.example.com/orders/o-7", "PUT", {"x_order": "o-7"}, {"name": "Ann"}
    )
    default = plan('to http "https://crm.example.com/orders"', ORDER)
    assert default == HttpPlan("https://crm.example.com/orders", "POST", {}, ORDER)


def test_to_file_and_log() -> None:
    assert plan('to file "out/orders.jsonl"', ORDER) == FilePlan("out/orders.jsonl", ORDER)
    assert plan("to log { value = value.order_id }", ORDER) == LogPlan("o-7")
    assert plan("to log", ORDER) == LogPlan(ORDER)
