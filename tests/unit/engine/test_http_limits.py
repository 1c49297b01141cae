"""The listener's limits and timeouts (lhpipe/gateway/http_limits.py), on a real socket: an
:class:`~lhpipe.gateway.server.HttpListener` on loopback in a thread of its own, serving a real
webhook route (``auth = none``, a fake producer) and raw bytes sent exactly as written."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import resource
import select
import selectors
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Any

import pytest
from waiting import wait_for

from lhpipe.gateway import http_limits
from lhpipe.gateway.gateway import Gateway
from lhpipe.gateway.http_limits import HttpLimits, LogLimiter, fit_max_connections
from lhpipe.gateway.server import EngineApp, HttpListener, Receive, Scope, Send
from lhpipe.kinds import compile_program, load_texts
from lhpipe.settings import Settings, SettingsError

PROGRAM = 'webhook open { path = "/hook"  auth = none  body = json  topic = "t-open" }'
HOOK = (
    b"POST /hook HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
    b"content-length: %d\r\n\r\n"
)
HEALTHZ = b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n"
#: How long a test waits for the server to answer or close before it fails; a timeout the
#: test means to exclude is set far beyond it (:data:`NEVER`).
DEADLINE = 30.0
NEVER = 3600.0


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
    sent: int  # how many of the parts went out before the server answered
    received: bytes


def exchange(port: int, parts: Sequence[bytes | float], *, answers: int | None = None) -> Exchange:
    """Sends ``parts`` (bytes, or a float: sleep that long) on a new connection, stopping at
    the server's first answer, then reads until the server closes the connection or, given
    ``answers``, until that many whole answers came; fails after :data:`DEADLINE` seconds
    without either."""
    received = bytearray()
    closed = False
    sent = 0
    with socket.create_connection(("127.0.0.1", port), timeout=DEADLINE) as conn:
        try:
            for part in parts:
                if select.select([conn], [], [], 0)[0]:
                    break  # the server answered (or closed) first
                if isinstance(part, float):
                    time.sleep(part)
                else:
                    conn.sendall(part)
                sent += 1
            while answers is None or _whole_answers(bytes(received)) < answers:
                chunk = conn.recv(65536)
                if not chunk:
                    closed = True
                    break
                received += chunk
        except TimeoutError:
            raise AssertionError(f"not answered nor closed in {DEADLINE} s") from None
        except (ConnectionResetError, BrokenPipeError):
            closed = True
            with suppress(OSError):
                received += conn.recv(65536)
    statuses = [int(s) for s in re.findall(rb"HTTP/1\.1 (\d{3}) ", bytes(received))]
    return Exchange(statuses, closed, sent, bytes(received))


def _whole_answers(received: bytes) -> int:
    """How many answers ``received`` holds whole (head and ``content-length`` bytes)."""
    count = 0
    while (end := received.find(b"\r\n\r\n")) >= 0:
        length = re.search(rb"content-length: (\d+)", received[:end], re.IGNORECASE)
        rest = received[end + 4 :]
        size = int(length.group(1)) if length else 0
        if len(rest) < size:
            break
        received = rest[size:]
        count += 1
    return count


def problem(received: bytes) -> dict[str, Any]:
    head, _, body = received.partition(b"\r\n\r\n")
    assert b"content-type: application/problem+json" in head
    assert b"connection: close" in head
    parsed: dict[str, Any] = json.loads(body)
    return parsed


# -- timeouts ------------------------------------------------------------------------------------


def _refused(reason: str) -> float:
    from lhpipe.core.metrics import REGISTRY

    return REGISTRY.get_sample_value("lhpipe_http_refused_total", {"reason": reason}) or 0.0


def test_a_head_sent_slowly_is_408_and_closed_while_it_still_comes() -> None:
    before = _refused("head-timeout")
    with served(header_timeout=0.5) as server:
        drip: list[bytes | float] = [b"GET /healthz HTTP/1.1\r\n"]
        for n in range(300):  # a line every 0.1 s: the head is never idle for 0.5 s
            drip += [0.1, b"x-drip-%d: 1\r\n" % n]
        answer = exchange(server.port, drip)
    assert answer.statuses == [408]
    assert _refused("head-timeout") == before + 1  # counted in /metrics
    assert answer.closed
    assert answer.sent < len(drip)  # cut off mid-head: the timeout runs from its first byte
    assert problem(answer.received)["detail"] == "the request head did not arrive within 0.5 s"


def test_a_connection_that_sends_nothing_is_closed_by_the_head_timeout() -> None:
    with served(header_timeout=0.5, keep_alive_timeout=NEVER) as server:
        answer = exchange(server.port, [])
    assert answer.closed
    assert answer.statuses == []


def test_a_body_shorter_than_its_content_length_is_408_and_produces_nothing() -> None:
    with served(body_timeout=0.5) as server:
        body = b'{"a": 1}'
        answer = exchange(server.port, [HOOK % (len(body) + 10) + body])
        assert answer.statuses == [408]
        assert answer.closed
        assert server.producer.values == []
        # The listener goes on serving.
        assert exchange(server.port, [hook(body)], answers=1).statuses == [202]


def test_a_body_sent_within_the_timeout_in_pieces_is_accepted() -> None:
    with served(body_timeout=DEADLINE) as server:
        body = b'{"a": 1, "b": 2}'
        answer = exchange(server.port, [HOOK % len(body), 0.3, body[:5], 0.3, body[5:]], answers=1)
        assert answer.statuses == [202]
        assert server.producer.values == [body]


# -- sizes ---------------------------------------------------------------------------------------


def test_a_head_over_the_cap_is_431_as_soon_as_it_crosses_it() -> None:
    # Neither head ever ends, and no timeout comes: only crossing the cap answers.
    with served(max_header_bytes=4096, header_timeout=NEVER) as server:
        unfinished = b"GET /healthz HTTP/1.1\r\nx-big: " + b"a" * 5000
        answer = exchange(server.port, [unfinished])
        pieces: list[bytes | float] = [b"GET /healthz HTTP/1.1\r\nx-big: "]
        pieces += [0.05, b"a" * 1000] * 5  # the fifth piece crosses it
        dripped = exchange(server.port, pieces)
    assert answer.statuses == [431]
    assert answer.closed
    assert problem(answer.received)["detail"] == "the request head is larger than 4096 bytes"
    assert dripped.statuses == [431]
    assert dripped.closed


def test_a_head_under_the_cap_is_served() -> None:
    with served(max_header_bytes=4096) as server:
        head = b"GET /healthz HTTP/1.1\r\nx-big: " + b"a" * 3900 + b"\r\n\r\n"
        assert exchange(server.port, [head], answers=1).statuses == [200]


def test_a_huge_unfinished_header_is_refused_with_the_default_cap() -> None:
    with served() as server:
        answer = exchange(server.port, [b"GET / HTTP/1.1\r\nx-big: " + b"a" * 200_000])
    assert answer.statuses == [431]
    assert answer.closed


def test_a_request_target_over_the_cap_is_414() -> None:
    with served(max_request_line=1024, header_timeout=NEVER) as server:
        answer = exchange(server.port, [b"GET /" + b"a" * 2000])  # its line never ends
        fine = exchange(server.port, [b"GET /" + b"a" * 900 + b" HTTP/1.1\r\n\r\n"], answers=1)
    assert answer.statuses == [414]
    assert answer.closed
    assert fine.statuses == [404]


# -- connections ---------------------------------------------------------------------------------


def test_connections_over_the_cap_are_refused_503_at_once_and_served_again_after() -> None:
    # The sixth connection sends nothing and no timeout comes: only the cap answers it.
    with served(max_connections=5, header_timeout=NEVER, keep_alive_timeout=NEVER) as server:
        held = [socket.create_connection(("127.0.0.1", server.port), DEADLINE) for _ in range(5)]
        try:
            for conn in held:  # answered, so open on the server's side too
                conn.sendall(HEALTHZ)
                assert conn.recv(65536).startswith(b"HTTP/1.1 200 ")
            over = exchange(server.port, [])
        finally:
            for conn in held:
                conn.close()
        wait_for(
            lambda: exchange(server.port, [HEALTHZ], answers=1).statuses == [200],
            "a connection to be served once the five are closed",
        )
    assert over.statuses == [503]
    assert over.closed
    assert b"retry-after: 1\r\n" in over.received


# -- pipelining ----------------------------------------------------------------------------------


def test_pipelined_requests_are_answered_in_order_without_waiting_for_the_connection() -> None:
    requests = b"".join(
        b"POST /slow HTTP/1.1\r\nhost: x\r\ncontent-length: 1\r\n\r\n%d" % n for n in (1, 2, 3)
    )
    # No timeout comes: the three answers owe nothing to one.
    limits = {"header_timeout": NEVER, "keep_alive_timeout": NEVER}
    with served(**limits) as server, socket.create_connection(("127.0.0.1", server.port)) as conn:
        conn.settimeout(DEADLINE)
        conn.sendall(requests)
        received = b""
        while _whole_answers(received) < 3:
            received += conn.recv(65536)
    bodies = re.findall(rb"content-length: 1\r\n\r\n(\d)", received)
    assert bodies == [b"1", b"2", b"3"]


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
    # No timeout comes: only the upgrade closes the connection.
    with served(header_timeout=NEVER, keep_alive_timeout=NEVER) as server:
        answer = exchange(server.port, [upgrade + HEALTHZ])
    assert answer.statuses == [200]
    assert answer.closed


# -- under attack --------------------------------------------------------------------------------


ATTACKERS = 300


def partial_heads(port: int) -> list[socket.socket]:
    """:data:`ATTACKERS` connections, each with a request head begun and not ended."""
    held = []
    for _ in range(ATTACKERS):
        conn = socket.create_connection(("127.0.0.1", port), DEADLINE)
        conn.sendall(b"POST /hook HTTP/1.1\r\nhost: x\r\n")
        held.append(conn)
    return held


def test_slowloris_partial_heads_do_not_keep_healthz_and_a_webhook_from_answering() -> None:
    body = b'{"applicant": "ann"}'
    closing = b"host: x\r\nconnection: close"
    # No head timeout: the partial heads stay open throughout. Connections are accepted in
    # the order they came, so the server holds every partial head when a probe arrives.
    with served(header_timeout=NEVER) as server:
        held = partial_heads(server.port)
        try:
            probes = [
                exchange(server.port, [request.replace(b"host: x", closing)]).statuses
                for request in (HEALTHZ, hook(body))
                for _ in range(10)
            ]
            untouched = not select.select(held, [], [], 0)[0]
        finally:
            for conn in held:
                conn.close()
        records = len(server.producer.values)
    assert probes == [[200]] * 10 + [[202]] * 10
    assert untouched  # no partial head was answered or closed meanwhile
    assert records == 10


def test_slowloris_partial_heads_that_keep_coming_are_all_closed_with_408() -> None:
    with served(header_timeout=2.0) as server:
        held = partial_heads(server.port)
        answers = dict.fromkeys(held, b"")
        selector = selectors.DefaultSelector()
        for conn in held:
            conn.setblocking(False)
            selector.register(conn, selectors.EVENT_READ)
        opened = set(held)
        deadline = time.monotonic() + DEADLINE
        next_drip = time.monotonic() + 0.5
        while opened:
            assert time.monotonic() < deadline, f"{len(opened)} partial heads still open"
            for key, _events in selector.select(0.1):
                conn = key.fileobj
                assert isinstance(conn, socket.socket)
                try:
                    data = conn.recv(65536)
                except OSError:
                    data = b""
                if data:
                    answers[conn] += data
                    continue
                opened.discard(conn)
                selector.unregister(conn)
                conn.close()
            if time.monotonic() >= next_drip:  # one more header line each half second
                next_drip += 0.5
                for conn in opened:
                    with suppress(OSError):
                        conn.send(b"x-more: 1\r\n")
        records = len(server.producer.values)
    assert all(answer.startswith(b"HTTP/1.1 408 ") for answer in answers.values())
    assert records == 0


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
    with caplog.at_level(logging.WARNING, "lhpipe.gateway.server"):
        asyncio.run(go())
    lines = [r for r in caplog.records if "cannot accept connections" in r.getMessage()]
    assert len(lines) == 1
    assert seen == ["something else", "after"]
