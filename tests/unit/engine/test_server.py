"""The HTTP listener: health, readiness, metrics, status page, route table, real serving."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
from free_ports import free_port
from prometheus_client import CollectorRegistry, Counter, Gauge

from lhpipe.gateway.server import (
    EngineApp,
    HttpListener,
    Receive,
    Scope,
    Send,
    listening_socket,
    send_json,
)
from lhpipe.runtime.status import PipelineStatus, State

RUNNING = PipelineStatus("orders", State.RUNNING, True, {"run_wf:order-flow": True})
PAUSED = PipelineStatus(
    "payments",
    State.PAUSED,
    True,
    {"post_event:paid": False},
    detail="UNAUTHENTICATED: token expired",
)


def request(
    app: EngineApp, method: str, path: str, headers: dict[str, str] | None = None
) -> httpx.Response:
    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://lhpipe") as client:
            return await client.request(method, path, headers=headers)

    return asyncio.run(go())


def app_with(*statuses: PipelineStatus, registry: CollectorRegistry | None = None) -> EngineApp:
    return EngineApp(lambda: statuses, registry=registry or CollectorRegistry())


def test_healthz_answers_while_alive_whatever_the_pipelines() -> None:
    response = request(app_with(PAUSED), "GET", "/healthz")
    assert response.status_code == 200
    assert response.json() == {"alive": True}


def test_readyz_is_200_when_every_pipeline_is_ready() -> None:
    response = request(app_with(RUNNING), "GET", "/readyz")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["ready"] is True
    assert body["not_ready"] == []
    assert body["pipelines"]["orders"] == {
        "name": "orders",
        "ready": True,
        "state": "running",
        "source_connected": True,
        "targets": {"run_wf:order-flow": True},
        "detail": None,
    }


def test_readyz_is_503_and_names_the_pipelines_that_are_not_ready() -> None:
    response = request(app_with(RUNNING, PAUSED), "GET", "/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["ready"] is False
    assert body["not_ready"] == ["payments"]
    assert body["pipelines"]["payments"]["state"] == "paused"
    assert body["pipelines"]["payments"]["detail"] == "UNAUTHENTICATED: token expired"
    assert body["pipelines"]["orders"]["ready"] is True


def test_readyz_reads_the_statuses_on_every_request() -> None:
    current = [PipelineStatus("orders", State.STARTING, False)]
    app = EngineApp(lambda: current, registry=CollectorRegistry())
    assert request(app, "GET", "/readyz").status_code == 503
    current[0] = RUNNING
    assert request(app, "GET", "/readyz").status_code == 200


def test_readyz_is_503_while_starting_even_with_no_statuses_yet() -> None:
    # The listener accepts connections before the Supervisor has built anything: an empty
    # status list then must not read as "every pipeline is ready".
    app = EngineApp(lambda: [], registry=CollectorRegistry(), starting=True)
    response = request(app, "GET", "/readyz")
    assert response.status_code == 503
    assert response.json()["ready"] is False
    assert response.json()["starting"] is True
    app.starting = False
    response = request(app, "GET", "/readyz")
    assert response.status_code == 200
    assert response.json() == {
        "ready": True,
        "starting": False,
        "not_ready": [],
        "pipelines": {},
        "worker": {"index": 0, "count": 1, "pid": os.getpid()},
    }


def test_metrics_is_the_prometheus_exposition_of_the_registry() -> None:
    registry = CollectorRegistry()
    records_in = Counter("lhpipe_records_in", "in", ["pipeline"], registry=registry)
    records_in.labels("orders").inc(3)
    response = request(app_with(RUNNING, registry=registry), "GET", "/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    assert 'lhpipe_records_in_total{pipeline="orders"} 3.0' in response.text


def test_metrics_speaks_openmetrics_when_the_scraper_asks_for_it() -> None:
    registry = CollectorRegistry()
    Counter("lhpipe_records_in", "in", ["pipeline"], registry=registry).labels("orders").inc()
    response = request(
        app_with(RUNNING, registry=registry),
        "GET",
        "/metrics",
        headers={"accept": "application/openmetrics-text; version=1.0.0"},
    )
    assert response.headers["content-type"].startswith("application/openmetrics-text")
    assert response.text.endswith("# EOF\n")


def test_the_engine_registry_is_served_by_default() -> None:
    response = request(EngineApp(lambda: [RUNNING]), "GET", "/metrics")
    assert "# TYPE lhpipe_records_in_total counter" in response.text


def test_status_page_shows_states_and_counters_per_pipeline() -> None:
    registry = CollectorRegistry()
    Counter("lhpipe_records_in", "in", ["pipeline"], registry=registry).labels("orders").inc(7)
    out = Counter("lhpipe_records_out", "out", ["pipeline", "target"], registry=registry)
    out.labels("orders", "run_wf:a").inc(2)
    out.labels("orders", "to_log").inc(3)
    Gauge("lhpipe_in_flight", "now", ["pipeline"], registry=registry).labels("orders").set(4)
    limit = Gauge("lhpipe_concurrency_limit", "limit", ["pipeline"], registry=registry)
    limit.labels("orders").set(96)
    response = request(app_with(RUNNING, PAUSED, registry=registry), "GET", "/")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    page = response.text
    assert "lhpipe: not ready" in page
    orders_row = next(line for line in page.splitlines() if "<td>orders</td>" in line)
    cells = re.findall(r"<td[^>]*>(.*?)</td>", orders_row)
    # pipeline, state, source, targets, detail, in, out, failed, retries, dead, skipped,
    # in flight, limit
    assert cells[:2] == ["orders", "running"]
    assert cells[5:] == ["7", "5", "0", "0", "0", "0", "4", "96"]
    assert "UNAUTHENTICATED: token expired" in page


def test_status_page_says_starting_while_the_process_starts() -> None:
    app = EngineApp(lambda: [], registry=CollectorRegistry(), starting=True)
    assert "<h1>lhpipe: starting</h1>" in request(app, "GET", "/").text
    app.starting = False
    assert "<h1>lhpipe: ready</h1>" in request(app, "GET", "/").text


def test_status_page_escapes_names_and_details() -> None:
    evil = PipelineStatus(
        "p<script>", State.FAILED, False, {"to_http:<b>": False}, detail='"x" & <img>'
    )
    page = request(app_with(evil), "GET", "/").text
    assert "<script>" not in page
    assert "<img>" not in page
    assert "p&lt;script&gt;" in page
    assert "&quot;x&quot; &amp; &lt;img&gt;" in page


def test_head_gets_the_headers_without_a_body() -> None:
    response = request(app_with(RUNNING), "HEAD", "/readyz")
    assert response.status_code == 200
    assert response.content == b""
    assert int(response.headers["content-length"]) > 0


def test_builtin_routes_refuse_other_methods_with_405() -> None:
    response = request(app_with(RUNNING), "POST", "/metrics")
    assert response.status_code == 405
    assert response.headers["allow"] == "GET, HEAD"
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["status"] == 405


def test_unknown_paths_get_a_404_problem() -> None:
    response = request(app_with(RUNNING), "GET", "/nope")
    assert response.status_code == 404
    assert response.json()["detail"] == "nothing is served at /nope"


def _answering(text: str) -> Callable[[Scope, Receive, Send], Awaitable[None]]:
    async def handler(scope: Scope, receive: Receive, send: Send) -> None:
        await send_json(send, 202, {"from": text, "method": scope["method"]})

    return handler


def test_the_route_table_is_swapped_in_one_assignment() -> None:
    app = app_with(RUNNING)
    app.routes = {"/hooks/a": _answering("first")}
    assert request(app, "POST", "/hooks/a").json() == {"from": "first", "method": "POST"}
    app.routes = {"/hooks/b": _answering("second")}
    assert request(app, "POST", "/hooks/a").status_code == 404
    assert request(app, "PUT", "/hooks/b").json() == {"from": "second", "method": "PUT"}


def test_builtin_routes_win_over_the_route_table() -> None:
    app = app_with(RUNNING)
    app.routes = {"/healthz": _answering("webhook")}
    assert request(app, "GET", "/healthz").json() == {"alive": True}


def test_the_listener_serves_on_a_real_port_and_stops() -> None:
    async def go() -> tuple[int, dict[str, Any], bool]:
        listener = HttpListener(app_with(RUNNING), host="127.0.0.1", port=0)
        await listener.start()
        async with httpx.AsyncClient() as client:
            response = await client.get(f"http://127.0.0.1:{listener.port}/readyz")
        await listener.stop()
        with socket.socket() as probe:
            refused = probe.connect_ex(("127.0.0.1", listener.port)) != 0
        return response.status_code, response.json(), refused

    status, body, refused_after_stop = asyncio.run(go())
    assert status == 200
    assert body["ready"] is True
    assert refused_after_stop


def test_a_port_in_use_fails_start_with_oserror() -> None:
    port = free_port()

    async def go() -> None:
        first = HttpListener(app_with(RUNNING), host="127.0.0.1", port=port)
        await first.start()
        try:
            second = HttpListener(app_with(RUNNING), host="127.0.0.1", port=port)
            with pytest.raises(OSError):
                await second.start()
        finally:
            await first.stop()

    asyncio.run(go())


def test_the_listener_leaves_sigterm_to_the_engine() -> None:
    def engine_handler(signum: int, frame: object) -> None:
        raise AssertionError("not called in this test")

    async def go() -> object:
        listener = HttpListener(app_with(RUNNING), host="127.0.0.1", port=0)
        await listener.start()
        try:
            return signal.getsignal(signal.SIGTERM)
        finally:
            await listener.stop()

    previous = signal.signal(signal.SIGTERM, engine_handler)
    try:
        assert asyncio.run(go()) is engine_handler
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_connections_accepted_on_the_listening_socket_have_nagle_off() -> None:
    # asyncio sets TCP_NODELAY only on accepted sockets whose proto is IPPROTO_TCP; with
    # proto 0 (socket.create_server) kept-alive responses stall ~40 ms on delayed ACKs.
    sock = listening_socket("127.0.0.1", 0)
    nodelay: list[int] = []

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted = writer.get_extra_info("socket")
        nodelay.append(accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
        writer.close()

    async def go() -> None:
        server = await asyncio.start_server(on_connect, sock=sock)
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", sock.getsockname()[1])
            for _ in range(200):
                if nodelay:
                    break
                await asyncio.sleep(0.01)
            writer.close()
        finally:
            server.close()
            await server.wait_closed()

    asyncio.run(go())
    assert nodelay == [1]
