"""``to http``: what the endpoint receives and how its answers are classified."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from datetime import UTC, datetime

import httpx
import pytest

from lhpipe.core.errors import PausedError, PermanentError, TransientError
from lhpipe.core.plans import HttpPlan, LogPlan
from lhpipe.targets.to_http_sender import HttpSender, HttpTransientError, parse_retry_after

PLAN = HttpPlan(
    url="https://crm.example.com/customers",
    method="POST",
    headers={"X-Tenant": "acme"},
    body={"id": "c-1", "since": datetime(2024, 5, 1, 12, 30, tzinfo=UTC), "photo": b"\x89PNG"},
)


def send_with(
    handler: Callable[[httpx.Request], httpx.Response], plan: HttpPlan = PLAN, **kwargs: float
) -> None:
    async def go() -> None:
        client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
        sender = HttpSender(client, **kwargs)
        try:
            await sender.send(plan)
        finally:
            await sender.close()
            await client.aclose()

    asyncio.run(go())


def test_the_endpoint_receives_the_body_as_json_with_the_targets_headers() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(201)

    send_with(handler)
    (request,) = seen
    assert request.method == "POST"
    assert str(request.url) == "https://crm.example.com/customers"
    assert request.headers["content-type"] == "application/json"
    assert request.headers["x-tenant"] == "acme"
    assert json.loads(request.content) == {
        "id": "c-1",
        "since": "2024-05-01T12:30:00.000Z",
        "photo": "iVBORw==",
    }


def test_a_content_type_header_of_the_target_wins() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200)

    plan = HttpPlan(PLAN.url, "PUT", {"Content-Type": "application/vnd.crm+json"}, {"a": 1})
    send_with(handler, plan)
    assert seen[0].headers.get_list("content-type") == ["application/vnd.crm+json"]


def test_a_null_body_sends_no_body() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(204)

    send_with(handler, HttpPlan(PLAN.url, "DELETE", {}, None))
    assert seen[0].content == b""
    assert "content-type" not in seen[0].headers


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504])
def test_retryable_statuses_are_transient(status: int) -> None:
    with pytest.raises(HttpTransientError) as caught:
        send_with(lambda request: httpx.Response(status, text="busy"))
    assert caught.value.code == f"HTTP_{status}"
    assert "busy" in caught.value.message


def test_retry_after_seconds_is_a_hint_on_the_error() -> None:
    with pytest.raises(HttpTransientError) as caught:
        send_with(lambda request: httpx.Response(429, headers={"Retry-After": "7"}))
    assert caught.value.retry_after == 7.0


def test_no_retry_after_leaves_the_hint_empty() -> None:
    with pytest.raises(HttpTransientError) as caught:
        send_with(lambda request: httpx.Response(503))
    assert caught.value.retry_after is None


def test_retry_after_as_an_http_date() -> None:
    now = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC).timestamp()
    assert parse_retry_after("Wed, 01 May 2024 12:00:30 GMT", now=now) == 30.0
    assert parse_retry_after("Wed, 01 May 2024 11:00:00 GMT", now=now) == 0.0
    assert parse_retry_after("soon", now=now) is None


@pytest.mark.parametrize("status", [401, 407])
def test_refused_credentials_pause_the_pipeline(status: int) -> None:
    with pytest.raises(PausedError) as caught:
        send_with(lambda request: httpx.Response(status, text="token expired"))
    assert caught.value.code == f"HTTP_{status}"
    assert "token expired" in caught.value.message


@pytest.mark.parametrize("status", [400, 403, 404, 409, 413, 422, 301])
def test_other_statuses_are_permanent_with_the_status_as_code(status: int) -> None:
    with pytest.raises(PermanentError) as caught:
        send_with(lambda request: httpx.Response(status, json={"error": "field `id` unknown"}))
    assert caught.value.code == f"HTTP_{status}"
    assert "field `id` unknown" in caught.value.message


def test_connection_errors_are_transient() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    with pytest.raises(HttpTransientError) as caught:
        send_with(refuse)
    assert caught.value.code == "HTTP_CONNECTION"


def test_an_httpx_timeout_is_transient() -> None:
    def slow(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("read timed out", request=request)

    with pytest.raises(TransientError) as caught:
        send_with(slow)
    assert caught.value.code == "HTTP_TIMEOUT"


def test_the_deadline_bounds_the_whole_call() -> None:
    async def hang(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(30)
        return httpx.Response(200)

    async def go() -> None:
        client = httpx.AsyncClient(transport=httpx.MockTransport(hang))
        await HttpSender(client, deadline=0.05).send(PLAN)

    with pytest.raises(HttpTransientError) as caught:
        asyncio.run(go())
    assert caught.value.code == "HTTP_TIMEOUT"


def test_a_url_without_a_usable_scheme_is_permanent() -> None:
    async def go() -> None:
        sender = HttpSender()
        try:
            await sender.send(HttpPlan("ftp://example.com/x", "POST", {}, {}))
        finally:
            await sender.close()

    with pytest.raises(PermanentError) as caught:
        asyncio.run(go())
    assert caught.value.code == "HTTP_URL"


def test_a_value_without_json_form_is_permanent() -> None:
    with pytest.raises(PermanentError) as caught:
        send_with(lambda request: httpx.Response(200), HttpPlan(PLAN.url, "POST", {}, {1: 2}))
    assert caught.value.code == "ENCODE"


def test_the_sender_refuses_other_plans() -> None:
    async def go() -> None:
        await HttpSender(httpx.AsyncClient()).send(LogPlan({"a": 1}))

    with pytest.raises(TypeError):
        asyncio.run(go())


def test_connected_until_closed() -> None:
    async def go() -> tuple[bool, bool]:
        sender = HttpSender()
        before = sender.connected()
        await sender.close()
        return before, sender.connected()

    assert asyncio.run(go()) == (True, False)
