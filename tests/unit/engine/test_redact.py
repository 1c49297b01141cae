"""URLs without their credentials (issue 12, item 3): the one function, the labels built with it,
and the `to http` error messages."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import httpx
import pytest

from lhpipe.core.errors import DeliveryError
from lhpipe.core.metrics import target_label
from lhpipe.core.plans import HttpPlan
from lhpipe.core.redact import redact_text, redact_url
from lhpipe.targets.to_http_sender import HttpSender


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("http://user:PW@host/ok?api_key=KEY", "http://***@host/ok?api_key=***"),
        ("https://tok@h:8443/a/b?x=1&y&z=2#at=9", "https://***@h:8443/a/b?x=***&y&z=***#at=***"),
        ("https://h/p@q?k=v;w=2", "https://h/p@q?k=***;w=***"),  # an @ in the path is no userinfo
        ("https://h/items?after=${cursor}&a=b", "https://h/items?after=***&a=***"),
        ("https://crm.example.com/customers", "https://crm.example.com/customers"),
        ("out/audit.jsonl", "out/audit.jsonl"),
    ],
)
def test_redact_url_keeps_scheme_host_port_path_and_query_names(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_redact_text_redacts_every_url_in_a_message() -> None:
    text = "POST http://u:pw@h/x?key=K answered 503: see https://h/y?sig=S now"
    assert (
        redact_text(text) == "POST http://***@h/x?key=*** answered 503: see https://h/y?sig=*** now"
    )
    assert redact_text("no url here: a=b") == "no url here: a=b"


def test_only_to_http_labels_are_redacted() -> None:
    assert target_label("to_http", "https://u:p@h/x?k=v") == "to_http:https://***@h/x?k=***"
    assert target_label("run_wf", "know-your-customer") == "run_wf:know-your-customer"
    assert target_label("to_log", None) == "to_log"


def failure(handler: Callable[[httpx.Request], httpx.Response]) -> DeliveryError:
    url = "https://crm:PW@crm.test/customers?api_key=KEY&n=1"

    async def go() -> None:
        client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
        try:
            await HttpSender(client).send(HttpPlan(url, "POST", {}, {"a": 1}))
        finally:
            await client.aclose()

    with pytest.raises(DeliveryError) as caught:
        asyncio.run(go())
    return caught.value


def test_to_http_error_messages_name_the_url_redacted() -> None:
    def unavailable(request: httpx.Request) -> httpx.Response:
        return httpx.Response(503, text=f"cannot serve {request.url}")

    def refused(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError(f"cannot connect to {request.url}", request=request)

    for handler in (unavailable, refused):
        message = str(failure(handler))
        assert "POST https://***@crm.test/customers?api_key=***&n=***" in message
        assert "PW" not in message and "KEY" not in message, message
