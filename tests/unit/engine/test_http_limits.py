"""The listener's limits and timeouts (lhpipe/engine/http_limits.py), on a real socket: an
:class:`~lhpipe.engine.server.HttpListener` on loopback in a thread of its own, serving a real
webhook route (``auth = none``, a fake producer) and raw bytes sent exactly as written."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import resource
import selectors
import socket
import statistics
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Any

import pytest

from lhpipe.check.load import load_texts
from lhpipe.engine import http_limits
from lhpipe.engine.gateway import Gateway
from lhpipe.engine.http_limits import HttpLimits, LogLimiter, fit_max_connections
from lhpipe.engine.server import EngineApp, HttpListener, Receive, Scope, Send
from lhpipe.graph.compile import compile_program
from lhpipe.settings import Settings, SettingsError

PROGRAM = 'webhook open { path = "/hook"  auth = none  body = json  topic = "t-open" }'
HOOK = (
    b"POST /hook HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
    b"content-length: %d\r\n\r\n"
)
HEALTHZ = b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n"


def hook(body: bytes) -> bytes:
    return HOOK % len(body) + body


class FakeProducer:
    def __init__(self) -> None:
        self.values: list[bytes | None] = []

    async def produce(self, topic: str, value: bytes | None, *args: Any, **kwargs: Any) -> None:
        self.values.append(value)


class FakeClients:
    def kafka_producer(self) -> Any:
        raise AssertionError("the Gateway's producer is given")

    def schema_registry(self) -> Any:
        raise AssertionError("no registry for a json body")

    def sender(self, kind: Any) -> Any:
        raise AssertionError("no direct mode here")


async def slow(scope: Scope, receive: Receive, send: Send) -> None:
    """Reads the body, waits 0.2 s, answers 202 with the body back."""
    body = b""
    more = True
    while more:
        message = await receive()
        if message["type"] != "http.request":
            return
        body += message.get("body", b"")
        more = message.get("more_body", False)
    await asyncio.sleep(0.2)
    await send(
        {
            "type": "http.response.start",
            "status": 202,
            "headers": [(b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


@dataclass
class Served:
    port: int
    producer: FakeProducer


@contextmanager
def served(**limits: Any) -> Iterator[Served]:
    """The listener with ``limits`` (HttpLimits fields) on a loopback port, in its own thread
    and event loop: ``/hook`` is a real webhook route, ``/slow`` :func:`slow`."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    producer = FakeProducer()
    loaded = load_texts({"limits.lhp": PROGRAM})
    program = loaded.program
    assert program is not None
    gateway = Gateway(
        compile_program(program, {}), program, Settings({}), FakeClients(), producer=producer
    )
    gateway.build()
    assert not gateway.failed
    app = EngineApp(lambda: [])
    gateway.install(app)
    app.routes = {**app.routes, "/slow": slow}
    listener = HttpListener(app, host="127.0.0.1", port=0, limits=HttpLimits(**limits))
    asyncio.run_coroutine_threadsafe(listener.start(), loop).result(10)
    try:
        yield Served(listener.port, producer)
    finally:
        asyncio.run_coroutine_threadsafe(listener.stop(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


@dataclass
class Exchange:
    statuses: list[int]
    closed: bool  # the server closed the connection (end of file or reset)
    seconds: float  # from the first byte sent to the close (or the timeout)
    received: bytes


def exchange(port: int, parts: Sequence[bytes | float], *, wait: float = 3.0) -> Exchange:
    """Sends ``parts`` (bytes, or a float: sleep that long) on a new connection, then reads
    until the server closes it or ``wait`` seconds pass without it."""
    received = bytearray()
    closed = False
    with socket.create_connection(("127.0.0.1", port), timeout=wait) as conn:
        started = time.monotonic()
        try:
            for part in parts:
                if isinstance(part, float):
                    time.sleep(part)
                else:
                    conn.sendall(part)
            while chunk := conn.recv(65536):
                received += chunk
            closed = True
        except TimeoutError:
            pass
        except (ConnectionResetError, BrokenPipeError):
            closed = True
            with suppress(OSError):
                received += conn.recv(65536)
        seconds = time.monotonic() - started
    statuses = [int(s) for s in re.findall(rb"HTTP/1\.1 (\d{3}) ", bytes(received))]
    return Exchange(statuses, closed, seconds, bytes(received))


def problem(received: bytes) -> dict[str, Any]:
    head, _, body = received.partition(b"\r\n\r\n")
    assert b"content-type: application/problem+json" in head
    assert b"connection: close" in head
    parsed: dict[str, Any] = json.loads(body)
    return parsed


# -- timeouts ------------------------------------------------------------------------------------


def _refused(reason: str) -> float:
    from lhpipe.engine.metrics import REGISTRY

    return REGISTRY.get_sample_value("lhpipe_http_refused_total", {"reason": reason}) or 0.0


def test_a_head_sent_slowly_is_408_and_closed_within_the_head_timeout() -> None:
    before = _refused("head-timeout")
    with served(header_timeout=0.5) as server:
        drip: list[bytes | float] = [b"GET /healthz HTTP/1.1\r\n"]
        for n in range(12):
            drip += [0.1, b"x-drip-%d: 1\r\n" % n]
        answer = exchange(server.port, drip)
    assert answer.statuses == [408]
    assert _refused("head-timeout") == before + 1  # counted in /metrics
    assert answer.closed
    assert answer.seconds < 1.2
    assert problem(answer.received)["detail"] == "the request head did not arrive within 0.5 s"


def test_a_connection_that_sends_nothing_is_closed_within_the_head_timeout() -> None:
    with served(header_timeout=0.5) as server:
        answer = exchange(server.port, [])
    assert answer.closed
    assert answer.statuses == []
    assert answer.seconds < 1.0


def test_a_body_shorter_than_its_content_length_is_408_and_produces_nothing() -> None:
    with served(body_timeout=0.5) as server:
        body = b'{"a": 1}'
        answer = exchange(server.port, [HOOK % (len(body) + 10) + body])
        assert answer.statuses == [408]
        assert answer.closed
        assert 0.4 < answer.seconds < 1.2
        assert server.producer.values == []
        # The listener goes on serving.
        assert exchange(server.port, [hook(body)], wait=0.5).statuses == [202]


def test_a_body_sent_within_the_timeout_in_pieces_is_accepted() -> None:
    with served(body_timeout=1.0) as server:
        body = b'{"a": 1, "b": 2}'
        answer = exchange(server.port, [HOOK % len(body), 0.3, body[:5], 0.3, body[5:]], wait=0.5)
        assert answer.statuses == [202]
        assert server.producer.values == [body]


# -- sizes ---------------------------------------------------------------------------------------


def test_a_head_over_the_cap_is_431_as_soon_as_it_crosses_it() -> None:
    with served(max_header_bytes=4096) as server:
        unfinished = b"GET /healthz HTTP/1.1\r\nx-big: " + b"a" * 5000
        answer = exchange(server.port, [unfinished])
        pieces: list[bytes | float] = [b"GET /healthz HTTP/1.1\r\nx-big: "]
        pieces += [b"a" * 1000, 0.05] * 6
        dripped = exchange(server.port, pieces)
    assert answer.statuses == [431]
    assert answer.closed
    assert answer.seconds < 0.2
    assert problem(answer.received)["detail"] == "the request head is larger than 4096 bytes"
    assert dripped.statuses == [431]
    assert dripped.seconds < 0.6  # right after the fifth piece, not at a timeout


def test_a_head_under_the_cap_is_served() -> None:
    with served(max_header_bytes=4096) as server:
        head = b"GET /healthz HTTP/1.1\r\nx-big: " + b"a" * 3900 + b"\r\n\r\n"
        assert exchange(server.port, [head], wait=0.5).statuses == [200]


def test_a_huge_unfinished_header_is_refused_with_the_default_cap() -> None:
    with served() as server:
        answer = exchange(server.port, [b"GET / HTTP/1.1\r\nx-big: " + b"a" * 200_000])
    assert answer.statuses == [431]
    assert answer.closed


def test_a_request_target_over_the_cap_is_414() -> None:
    with served(max_request_line=1024) as server:
        answer = exchange(server.port, [b"GET /" + b"a" * 2000])
        fine = exchange(server.port, [b"GET /" + b"a" * 900 + b" HTTP/1.1\r\n\r\n"], wait=0.5)
    assert answer.statuses == [414]
    assert answer.closed
    assert answer.seconds < 0.2
    assert fine.statuses == [404]


# -- connections ---------------------------------------------------------------------------------


def test_connections_over_the_cap_are_refused_503_at_once_and_served_again_after() -> None:
    with served(max_connections=5) as server:
        held = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(5)]
        try:
            time.sleep(0.2)
            over = exchange(server.port, [])
        finally:
            for conn in held:
                conn.close()
        time.sleep(0.2)
        after = exchange(server.port, [HEALTHZ], wait=0.5)
    assert over.statuses == [503]
    assert over.closed
    assert over.seconds < 0.2
    assert b"retry-after: 1\r\n" in over.received
    assert after.statuses == [200]


# -- pipelining ----------------------------------------------------------------------------------


def test_pipelined_requests_are_answered_in_order_without_waiting_for_the_connection() -> None:
    requests = b"".join(
        b"POST /slow HTTP/1.1\r\nhost: x\r\ncontent-length: 1\r\n\r\n%d" % n for n in (1, 2, 3)
    )
    with served() as server, socket.create_connection(("127.0.0.1", server.port)) as conn:
        conn.settimeout(3)
        started = time.monotonic()
        conn.sendall(requests)
        received = b""
        while received.count(b"HTTP/1.1 202") < 3 or not received.endswith(b"3"):
            received += conn.recv(65536)
        seconds = time.monotonic() - started
    bodies = re.findall(rb"content-length: 1\r\n\r\n(\d)", received)
    assert bodies == [b"1", b"2", b"3"]
    assert seconds < 1.5  # 3 times 0.2 s, far from the keep-alive timeout


def test_a_request_followed_by_garbage_gets_its_202_then_a_400() -> None:
    with served() as server:
        body = b'{"a": 1}'
        answer = exchange(server.port, [hook(body) + b"garbage\r\n\r\n"])
        assert server.producer.values == [body]
    assert answer.statuses == [202, 400]
    assert answer.closed
    assert problem(answer.received.split(b"HTTP/1.1 400", 1)[1])["status"] == 400


def test_a_pipelined_head_that_stalls_is_408_after_the_answer_before_it() -> None:
    with served(header_timeout=0.5) as server:
        first = b"POST /slow HTTP/1.1\r\nhost: x\r\ncontent-length: 1\r\n\r\n1"
        answer = exchange(server.port, [first + b"GET /healthz HTTP/1.1\r\nhost"])
    assert answer.statuses == [202, 408]
    assert answer.closed


def test_an_upgrade_request_is_answered_and_its_connection_closed() -> None:
    upgrade = b"GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: upgrade\r\nupgrade: h2c\r\n\r\n"
    with served() as server:
        answer = exchange(server.port, [upgrade + HEALTHZ])
    assert answer.statuses == [200]
    assert answer.closed
    assert answer.seconds < 1.0


# -- under attack --------------------------------------------------------------------------------


def timed(port: int, data: bytes) -> tuple[int, float]:
    started = time.monotonic()
    answer = exchange(port, [data.replace(b"host: x", b"host: x\r\nconnection: close")])
    return (answer.statuses or [0])[0], time.monotonic() - started


def test_slowloris_partial_heads_are_closed_while_healthz_and_a_webhook_keep_answering() -> None:
    timeout = 2.0
    attackers = 300
    body = b'{"applicant": "ann"}'
    with served(header_timeout=timeout) as server:
        baseline = [timed(server.port, HEALTHZ)[1] for _ in range(20)]
        baseline += [timed(server.port, hook(body))[1] for _ in range(20)]
        usual = statistics.median(baseline)

        selector = selectors.DefaultSelector()
        opened: dict[socket.socket, float] = {}
        for _ in range(attackers):
            conn = socket.create_connection(("127.0.0.1", server.port))
            conn.sendall(b"POST /hook HTTP/1.1\r\nhost: x\r\n")
            conn.setblocking(False)
            opened[conn] = time.monotonic()
            selector.register(conn, selectors.EVENT_READ)
        closed_after: list[float] = []
        answers: list[bytes] = []
        probes: list[tuple[int, float]] = []

        def probe() -> None:
            while len(closed_after) < attackers and len(probes) < 200:
                probes.append(timed(server.port, HEALTHZ))
                probes.append(timed(server.port, hook(body)))
                time.sleep(0.05)

        prober = threading.Thread(target=probe)
        prober.start()
        deadline = time.monotonic() + timeout + 5
        next_drip = time.monotonic() + 0.5
        while opened and time.monotonic() < deadline:
            for key, _events in selector.select(0.1):
                conn = key.fileobj
                assert isinstance(conn, socket.socket)
                try:
                    data = conn.recv(65536)
                except OSError:
                    data = b""
                if data:
                    answers.append(data)
                    continue
                closed_after.append(time.monotonic() - opened.pop(conn))
                selector.unregister(conn)
                conn.close()
            if time.monotonic() >= next_drip:  # one more header line each half second
                next_drip += 0.5
                for conn in opened:
                    with suppress(OSError):
                        conn.send(b"x-more: 1\r\n")
        for conn in opened:
            conn.close()
        prober.join(30)
        records = len(server.producer.values)
    assert not opened, f"{len(opened)} partial heads still open after {timeout + 5} s"
    assert max(closed_after) < timeout + 1.5
    assert all(answer.startswith(b"HTTP/1.1 408 ") for answer in answers)
    assert len(probes) >= 10
    assert {status for status, _ in probes} == {200, 202}
    latencies = [seconds for _, seconds in probes]
    assert statistics.median(latencies) < max(5 * usual, 0.05), (usual, latencies)
    assert max(latencies) < 1.0, (usual, latencies)
    assert records == 20 + sum(1 for status, _ in probes if status == 202)


# -- settings and logs ---------------------------------------------------------------------------


def test_the_limits_come_from_the_settings_with_defaults() -> None:
    assert HttpLimits.from_settings(Settings({})) == HttpLimits()
    assert HttpLimits() == HttpLimits(10.0, 30.0, 5.0, 65536, 8192, 1000)
    limits = HttpLimits.from_settings(
        Settings(
            {
                "LHPIPE_HTTP_HEADER_TIMEOUT": "2.5",
                "LHPIPE_HTTP_BODY_TIMEOUT": "60",
                "LHPIPE_HTTP_KEEP_ALIVE_TIMEOUT": "15",
                "LHPIPE_HTTP_MAX_HEADER_BYTES": "16384",
                "LHPIPE_HTTP_MAX_REQUEST_LINE": "4096",
            },
            file_values={"LHPIPE_HTTP_MAX_CONNECTIONS": "200"},
        )
    )
    assert limits == HttpLimits(2.5, 60.0, 15.0, 16384, 4096, 200)


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("LHPIPE_HTTP_HEADER_TIMEOUT", "soon", "must be a number of seconds, not 'soon'"),
        ("LHPIPE_HTTP_BODY_TIMEOUT", "0", "must be more than 0, not 0"),
        ("LHPIPE_HTTP_BODY_TIMEOUT", "inf", "must be more than 0, not inf"),
        ("LHPIPE_HTTP_MAX_HEADER_BYTES", "64k", "must be a whole number, not '64k'"),
        ("LHPIPE_HTTP_MAX_CONNECTIONS", "-1", "must be more than 0, not -1"),
    ],
)
def test_a_bad_limit_is_a_settings_error_naming_it(name: str, value: str, message: str) -> None:
    with pytest.raises(SettingsError, match=f"^{name} {re.escape(message)}$"):
        HttpLimits.from_settings(Settings({name: value}))


def test_the_listener_reads_its_limits_from_the_environment(monkeypatch: Any) -> None:
    monkeypatch.setenv("LHPIPE_HTTP_HEADER_TIMEOUT", "3")
    listener = HttpListener(EngineApp(lambda: []), port=0)
    assert listener.limits.header_timeout == 3.0


def test_the_connection_cap_is_lowered_to_fit_the_open_file_limit(
    monkeypatch: Any, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(resource, "getrlimit", lambda which: (1024, 4096))
    assert fit_max_connections(500) == 500
    assert not caplog.records
    with caplog.at_level(logging.WARNING):
        assert fit_max_connections(1000) == 1024 - http_limits.RESERVED_FILES
    assert "the open-file limit is 1024" in caplog.text


def test_repeated_log_lines_are_limited_and_counted(caplog: pytest.LogCaptureFixture) -> None:
    limiter = LogLimiter(logging.getLogger("test.limits"), interval=0.3)
    with caplog.at_level(logging.INFO, "test.limits"):
        logged = [limiter.log(logging.INFO, "a", "line %d", n) for n in range(1000)]
        assert limiter.log(logging.INFO, "b", "another kind")
        time.sleep(0.35)
        assert limiter.log(logging.INFO, "a", "line again")
    assert logged.count(True) == 1
    messages = [record.getMessage() for record in caplog.records]
    assert messages[0] == "line 0"
    assert messages[1] == "another kind"
    assert messages[2].startswith("line again (and 999 more like it in the last ")


def test_accept_errors_are_logged_at_most_once_per_interval(
    caplog: pytest.LogCaptureFixture,
) -> None:
    seen: list[str] = []

    async def go() -> None:
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(lambda loop, context: seen.append(context["message"]))
        restore = http_limits.limit_accept_error_logs(loop)
        for _ in range(5000):
            loop.call_exception_handler(
                {"message": http_limits.ACCEPT_ERROR, "exception": OSError(24, "Too many files")}
            )
        loop.call_exception_handler({"message": "something else"})
        restore()
        loop.call_exception_handler({"message": "after"})

    http_limits.LIMITER._last.pop("accept", None)
    with caplog.at_level(logging.WARNING, "lhpipe.engine.server"):
        asyncio.run(go())
    lines = [r for r in caplog.records if "cannot accept connections" in r.getMessage()]
    assert len(lines) == 1
    assert seen == ["something else", "after"]
