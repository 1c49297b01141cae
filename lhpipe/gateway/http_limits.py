"""Limits and timeouts of the HTTP listener, around uvicorn's httptools protocol.

uvicorn (httptools) serves the listener fast, but leaves a connection open for as long as its
client likes: a request head sent a byte at a time (slowloris), a body shorter than its
``Content-Length``, or a connection that never sends anything. llhttp has no cap on a head's
size either (httptools gathers a header's value in memory until its line ends), and a parse
error answers ``400`` at once, ahead of the answers still owed to earlier requests on the same
connection. :class:`LimitedHttpToolsProtocol` is uvicorn's protocol with those filled in; the
parsing stays llhttp's, this module only counts bytes, runs timers and writes canned refusals:

- **Head timeout** (:attr:`HttpLimits.header_timeout`): a request head (request line and
  headers) must be complete within this many seconds of its first byte, and a new connection
  must send a complete head within it; otherwise ``408`` and the connection is closed (silently
  when nothing at all was sent).
- **Body timeout** (:attr:`HttpLimits.body_timeout`): a body must be complete within this many
  seconds of the end of its head; otherwise ``408`` (the application sees ``http.disconnect``)
  and the connection is closed.
- **Head size** (:attr:`HttpLimits.max_header_bytes`): ``431`` as soon as a head grows past it,
  before the bytes over it are parsed. The bytes are counted from the read where a head starts;
  a head that shares a read with the end of the previous request on the connection is counted
  from the next read (so it can pass the cap by at most one read, 256 KiB).
- **Request target** (:attr:`HttpLimits.max_request_line`): ``414`` as soon as the URL grows
  past it.
- **Connections** (:attr:`HttpLimits.max_connections`): a connection over the cap is answered
  ``503`` with ``Retry-After: 1`` and closed at once, before anything is read or parsed.
- **Order**: a refusal (a parse error, a head timeout, a head over its cap) is written only
  after the answers to the earlier requests of the same connection (pipelining), then the
  connection is closed.
- **Upgrades** (WebSocket, ``h2c``, ``CONNECT``) are not taken: the request is answered as any
  other, then the connection is closed.

Refusals are ``application/problem+json`` (RFC 9457) with ``Connection: close``. They are logged
at INFO and the connection cap at WARNING, each kind at most once per
:data:`LOG_INTERVAL_SECONDS` with the number of lines left out (:class:`LogLimiter`); asyncio's
"socket.accept() out of system resource" (too many open files) likewise
(:func:`limit_accept_error_logs`).
"""

from __future__ import annotations

import asyncio
import http
import logging
import math
import resource
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import httptools
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

from lhpipe.core.jsonenc import dumps
from lhpipe.core.metrics import HTTP_REFUSED as REFUSED
from lhpipe.settings import Settings, SettingsError

log = logging.getLogger("lhpipe.gateway.server")

#: At most one log line of a kind per this many seconds (:class:`LogLimiter`).
LOG_INTERVAL_SECONDS = 10.0
#: Open files kept for the rest of the process (Kafka, LittleHorse, files) when the connection
#: cap is lowered to fit the process's open-file limit (:func:`fit_max_connections`).
RESERVED_FILES = 128

#: The asyncio message for an ``accept()`` that failed for want of file descriptors or memory.
ACCEPT_ERROR = "socket.accept() out of system resource"


@dataclass(frozen=True, slots=True)
class HttpLimits:
    """The listener's limits and timeouts (the module docstring); every one is a setting."""

    header_timeout: float = 10.0
    body_timeout: float = 30.0
    keep_alive_timeout: float = 5.0
    max_header_bytes: int = 64 * 1024
    max_request_line: int = 8 * 1024
    max_connections: int = 1000

    #: setting name -> (field, kind): what :meth:`from_settings` reads.
    SETTINGS: ClassVar[dict[str, tuple[str, type]]] = {
        "LHPIPE_HTTP_HEADER_TIMEOUT": ("header_timeout", float),
        "LHPIPE_HTTP_BODY_TIMEOUT": ("body_timeout", float),
        "LHPIPE_HTTP_KEEP_ALIVE_TIMEOUT": ("keep_alive_timeout", float),
        "LHPIPE_HTTP_MAX_HEADER_BYTES": ("max_header_bytes", int),
        "LHPIPE_HTTP_MAX_REQUEST_LINE": ("max_request_line", int),
        "LHPIPE_HTTP_MAX_CONNECTIONS": ("max_connections", int),
    }

    @classmethod
    def from_settings(cls, settings: Settings) -> HttpLimits:
        """The limits ``settings`` give (environment, ``lhpipe.toml``), defaults for the rest;
        :class:`SettingsError` naming the setting for a value that is not a positive number
        (seconds may have decimals; sizes and counts are whole numbers)."""
        values: dict[str, Any] = {}
        for name, (attribute, kind) in cls.SETTINGS.items():
            text = settings.get(name)
            if text is None:
                continue
            try:
                value = kind(text)
            except ValueError:
                what = "a number of seconds" if kind is float else "a whole number"
                raise SettingsError(f"{name} must be {what}, not {text!r}") from None
            if not value > 0 or (kind is float and not math.isfinite(value)):
                raise SettingsError(f"{name} must be more than 0, not {text}")
            values[attribute] = value
        return cls(**values)


def fit_max_connections(wanted: int, *, reserved: int = RESERVED_FILES) -> int:
    """``wanted``, or less when the process's open-file limit would not leave ``reserved``
    files to the rest of it: past that limit ``accept()`` fails (and asyncio retries it in a
    loop) instead of the cap refusing the connection cheaply."""
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or wanted <= soft - reserved:
        return wanted
    fitted = max(1, soft - reserved)
    log.warning(
        "LHPIPE_HTTP_MAX_CONNECTIONS is %d, but the open-file limit is %d: at most %d "
        "connections (raise the limit, `ulimit -n` or LimitNOFILE=, to allow more)",
        wanted,
        soft,
        fitted,
    )
    return fitted


class LogLimiter:
    """Log lines of one kind (``key``) at most once per ``interval`` seconds; the next line
    that gets through says how many were left out meanwhile."""

    def __init__(self, logger: logging.Logger, interval: float = LOG_INTERVAL_SECONDS) -> None:
        self.logger = logger
        self.interval = interval
        self._last: dict[str, float] = {}
        self._left_out: dict[str, int] = {}

    def log(self, level: int, key: str, message: str, *args: object) -> bool:
        """Log unless a line of ``key`` went out less than :attr:`interval` ago; returns
        whether it was logged."""
        now = time.monotonic()
        last = self._last.get(key)
        if last is not None and now - last < self.interval:
            self._left_out[key] = self._left_out.get(key, 0) + 1
            return False
        self._last[key] = now
        left_out = self._left_out.pop(key, 0)
        if left_out:
            message += " (and %d more like it in the last %.0f s)"
            args = (*args, left_out, now - last if last is not None else 0.0)
        self.logger.log(level, message, *args)
        return True


#: The listener's own limiter: refusals and connection-cap lines, whichever listener.
LIMITER = LogLimiter(log)


def limit_accept_error_logs(loop: asyncio.AbstractEventLoop) -> Callable[[], None]:
    """Make ``loop`` log "socket.accept() out of system resource" through :data:`LIMITER`
    (asyncio reports it once per pending connection and again at each retry: hundreds of
    thousands of lines a minute when the process runs out of file descriptors); everything
    else goes to the handler that was there. Returns the function that puts that one back."""
    previous = loop.get_exception_handler()

    def handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        if context.get("message") == ACCEPT_ERROR:
            LIMITER.log(
                logging.WARNING,
                "accept",
                "the listener cannot accept connections: %s (open-file limit reached?)",
                context.get("exception"),
            )
        elif previous is not None:
            previous(loop, context)
        else:
            loop.default_exception_handler(context)

    loop.set_exception_handler(handler)

    def restore() -> None:
        if loop.get_exception_handler() is handler:
            loop.set_exception_handler(previous)

    return restore


def refusal(status: int, detail: str, *, retry_after: int | None = None) -> bytes:
    """The bytes of a complete refusal: an RFC 9457 problem document, ``Connection: close``."""
    phrase = http.HTTPStatus(status).phrase
    body = dumps({"type": "about:blank", "title": phrase, "status": status, "detail": detail})
    head = (
        f"HTTP/1.1 {status} {phrase}\r\n"
        "content-type: application/problem+json\r\n"
        f"content-length: {len(body)}\r\n"
        + (f"retry-after: {retry_after}\r\n" if retry_after is not None else "")
        + "connection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


_OVERFLOW = refusal(503, "too many connections; try again shortly", retry_after=1)


class _TargetTooLong(Exception):
    """Raised from the parser's URL callback to stop parsing a request target over the cap."""


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with :attr:`limits` enforced (the module docstring). Use
    :func:`protocol_class` for a subclass with given limits."""

    limits: ClassVar[HttpLimits] = HttpLimits()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Whether the parser is between messages or inside a head (not yet complete), and
        # how many bytes of that head were fed to it.
        self._awaiting_head = True
        self._head_started = False
        self._head_bytes = 0
        self._header_timer: asyncio.TimerHandle | None = None
        self._body_timer: asyncio.TimerHandle | None = None
        # A refusal that waits for the answers owed to earlier requests; input is ignored.
        self._pending: tuple[int, str] | None = None
        self._done = False  # refused (or over the cap): nothing more is read or written
        self._over_cap = False

    # -- the connection --------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        if len(self.connections) >= self.limits.max_connections:
            # Over the cap: answered and closed before anything is parsed; never counted.
            self.transport = transport
            self._over_cap = self._done = True
            LIMITER.log(
                logging.WARNING,
                "overflow",
                "HTTP connection refused: %d connections open (LHPIPE_HTTP_MAX_CONNECTIONS)",
                len(self.connections),
            )
            REFUSED.labels("connections").inc()
            transport.write(_OVERFLOW)
            transport.close()
            return
        super().connection_made(transport)
        # A new connection owes a complete head within the head timeout.
        self._header_timer = self.loop.call_later(
            self.limits.header_timeout, self._header_timed_out
        )

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timers()
        if self._over_cap:
            self.parser = None  # type: ignore[assignment]
            return
        super().connection_lost(exc)

    def shutdown(self) -> None:
        if self._over_cap:
            return
        super().shutdown()

    def _cancel_timers(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None

    # -- reading ---------------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        if self._done or self._pending is not None:
            return  # a refusal is written or waits: what follows it is never read
        self._unset_keepalive_if_required()
        limit = self.limits.max_header_bytes
        while data:
            part = data
            if self._awaiting_head:
                room = limit - self._head_bytes
                if room <= 0:
                    self._refuse(431, f"the request head is larger than {limit} bytes", "head")
                    return
                if len(data) > room:
                    part = data[:room]
                self._head_bytes += len(part)
            data = data[len(part) :]
            try:
                self.parser.feed_data(part)
            except httptools.HttpParserUpgrade:
                self._unsupported_upgrade_warning()
                self._after_upgrade()
                return
            except httptools.HttpParserError as exc:
                if isinstance(exc.__context__, _TargetTooLong):
                    detail = (
                        f"the request target is longer than {self.limits.max_request_line} bytes"
                    )
                    self._refuse(414, detail, "target")
                else:
                    self._refuse(400, "the request is not valid HTTP/1.1", "invalid")
                return
            if self._done:
                return
        # Timers only for what is still incomplete at the end of a read: a request that came
        # whole in one read (the usual case) arms none.
        if self._awaiting_head:
            if self._header_timer is None and (self._head_started or self._head_bytes):
                self._header_timer = self.loop.call_later(
                    self.limits.header_timeout, self._header_timed_out
                )
        elif self._body_timer is None:
            self._body_timer = self.loop.call_later(self.limits.body_timeout, self._body_timed_out)

    def on_message_begin(self) -> None:
        self._head_started = True
        super().on_message_begin()

    def on_url(self, url: bytes) -> None:
        super().on_url(url)
        if len(self.url) > self.limits.max_request_line:
            raise _TargetTooLong

    def on_headers_complete(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None
        super().on_headers_complete()  # when it raises (a path not ASCII), the head is at fault
        self._awaiting_head = False

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._awaiting_head = True
        self._head_started = False
        self._head_bytes = 0
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None

    def _unsupported_upgrade_warning(self) -> None:
        LIMITER.log(logging.INFO, "upgrade", "HTTP upgrade refused: not supported")

    def _after_upgrade(self) -> None:
        """llhttp leaves what follows an upgrade request (``Connection: upgrade``, ``CONNECT``)
        to the protocol upgraded to, and there is none: the request is answered like any
        other, then the connection is closed, nothing after its head read."""
        self._done = True
        self._cancel_timers()
        cycle = self.cycle
        if cycle is None or cycle.response_complete:
            self._close()
        else:
            cycle.keep_alive = False

    # -- answering -------------------------------------------------------------------------

    def on_response_complete(self) -> None:
        if self._pending is not None and not self.pipeline and not self.transport.is_closing():
            # The last answer owed before the refusal is written: now the refusal.
            self.server_state.total_requests += 1
            status, detail = self._pending
            self._pending = None
            self._write_refusal(status, detail)
            return
        super().on_response_complete()
        if self._header_timer is not None:
            # A next head is already under way: its timeout rules, not keep-alive's.
            self._unset_keepalive_if_required()

    def _owed(self) -> bool:
        """Whether answers to earlier requests are still to be written."""
        cycle = self.cycle
        running = cycle is not None and not cycle.response_complete and not cycle.disconnected
        return running or bool(self.pipeline)

    def _refuse(self, status: int, detail: str, kind: str) -> None:
        """Refuse the request being read: at once, or after the answers owed before it."""
        LIMITER.log(logging.INFO, kind, "HTTP request refused with %d: %s", status, detail)
        REFUSED.labels(kind).inc()
        # A fault in the body of the newest request: that one is given up.
        if not self._awaiting_head and self.cycle is not None and not self._drop(self.cycle):
            return
        self._cancel_timers()
        if self._owed():
            self._pending = (status, detail)
            self.flow.pause_reading()
        else:
            self._write_refusal(status, detail)

    def _drop(self, cycle: RequestResponseCycle) -> bool:
        """Give up ``cycle`` (its body will not come): out of the queue if it waits there,
        else its application sees ``http.disconnect``. False when its answer has begun (or is
        written already: a refusal after it would answer the client's next request): the
        connection is closed instead."""
        if self.pipeline and self.pipeline[0][0] is cycle:
            self.pipeline.popleft()
            return True
        if cycle.response_started:
            self._close()
            return False
        cycle.disconnected = True
        cycle.message_event.set()
        return True

    def _write_refusal(self, status: int, detail: str) -> None:
        if not self.transport.is_closing():
            self.transport.write(refusal(status, detail))
        self._close()

    def _close(self) -> None:
        self._done = True
        self._cancel_timers()
        self._unset_keepalive_if_required()
        if not self.transport.is_closing():
            self.transport.close()

    # -- timers ----------------------------------------------------------------------------

    def _header_timed_out(self) -> None:
        self._header_timer = None
        if self._done or self.transport.is_closing() or not self._awaiting_head:
            return
        if not (self._head_started or self._head_bytes):
            if not self._owed():
                self._close()  # nothing sent at all: no answer, as for an idle keep-alive
            return
        timeout = self.limits.header_timeout
        self._refuse(408, f"the request head did not arrive within {timeout:g} s", "head-timeout")

    def _body_timed_out(self) -> None:
        self._body_timer = None
        if self._done or self.transport.is_closing() or self._awaiting_head:
            return
        timeout = self.limits.body_timeout
        self._refuse(408, f"the request body did not arrive within {timeout:g} s", "body-timeout")


def protocol_class(limits: HttpLimits) -> type[LimitedHttpToolsProtocol]:
    """A :class:`LimitedHttpToolsProtocol` subclass that enforces ``limits`` (uvicorn makes
    its protocols from a class, so the limits travel as a class attribute)."""
    return type("LimitedHttpToolsProtocol", (LimitedHttpToolsProtocol,), {"limits": limits})
